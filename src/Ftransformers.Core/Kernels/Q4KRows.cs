using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Q4_K rows, and Q5_K rows (the same blocks with a fifth bit a code, from a plane of their own), read in place
/// (<see cref="KBlockLayout"/>) against activations quantized to INT8 per block of 32:
/// y[t * rows + r] = Σ over sub-blocks j of (d · scale_j) · xscale_tj · (codes_j · x codes_tj) − (dmin · min_j) · xscale_tj · Σ x codes_tj,
/// each sub-block's dot exact in integers (codes 0..15, or 0..31, are the unsigned operand as they are). A block's eight scales
/// and mins are unpacked once per pass, a 32-bit word at a time, and shared by the pass's tokens. With AVX-512 two
/// sub-blocks fill a register and their dots stay in int32 lanes, each lane scaled by its sub-block's scale; with
/// AVX-VNNI or AVX2 a token's eight sub-block dots are folded by horizontal adds into one vector (lane j: sub-block j),
/// on ARM64 SDOT by pairwise adds into two, and scaled in one or two multiply-adds per block; on the portable
/// Vector128 path each sub-block's four lanes are scaled into the float sums. The mins enter as a multiply-add per
/// block, in a sum of their own. Measured on one Zen5 core, 2048 x 7168 matrices streamed from memory: one token
/// 16-17 GB/s on either x86 path (the per-block unpacking bounds it), where INT4 g32 row groups stream at about 32;
/// four tokens a pass, AVX-512 1.1x AVX-VNNI.
/// Paths: AVX-512 (BW), AVX-VNNI (vpdpbusd), AVX2 (vpmaddubsw + vpmaddwd), ARM64 SDOT, portable Vector128 (widening
/// multiplies) and scalar. A row is one sequential stream;
/// tokens go four a pass, then two, then one, and a (row, token) result takes the same operations in the same order
/// whichever tokens share its pass.
/// </summary>
public static class Q4KRows
{
    private const int Sub = KBlockLayout.Q4KSubBlockValues, SubsPerBlock = KBlockLayout.BlockValues / Sub;

    /// <summary>The path <see cref="Rows"/> takes on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        Avx512BW.IsSupported ? KernelPath.Avx512 : AvxVnni.IsSupported ? KernelPath.AvxVnni : Avx2.IsSupported ? KernelPath.Avx2 : Dp.IsSupported ? KernelPath.Dp
        : Vector128.IsHardwareAccelerated ? KernelPath.Vector128 : KernelPath.Scalar;

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) for every token of <paramref name="x"/> (quantized per block of 32).</summary>
    public static void Rows(in KBlockLayout weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(ActivePath, weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, in KBlockLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (weights.Format is not (KBlockFormat.Q4K or KBlockFormat.Q5K))
            throw new ArgumentException($"The Q4_K kernel reads Q4_K and Q5_K blocks, not {KBlockLayout.NameOf(weights.Format)}.", nameof(weights));
        int tokens = x.Tokens, rows = weights.Rows, cols = weights.Cols;
        if (x.Cols != cols || x.BlockSize != Sub)
            throw new ArgumentException($"Activations must be {cols} values per token in blocks of {Sub}, got {x.Cols} in blocks of {x.BlockSize}.", nameof(x));
        if (y.Length < (long)(tokens - 1) * rows + end)
            throw new ArgumentException($"The output needs {tokens} x {rows} values.", nameof(y));
        if ((uint)start > (uint)end || end > rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {rows} rows.");
        bool supported = path switch
        {
            KernelPath.Avx512 => Avx512BW.IsSupported,
            KernelPath.AvxVnni => AvxVnni.IsSupported,
            KernelPath.Avx2 => Avx2.IsSupported,
            KernelPath.Dp => Dp.IsSupported,
            KernelPath.Vector128 or KernelPath.Scalar => true,
            _ => false,
        };
        if (!supported)
            throw new PlatformNotSupportedException($"The Q4_K kernel has no {path} path on this CPU.");
        fixed (sbyte* codes = x.AllValues)
        fixed (float* xScales = x.AllScales, scaledSums = x.AllScaledSums)
        fixed (float* ys = y)
        {
            var job = new Job(weights, codes, xScales, scaledSums, ys);
            if (weights.Format == KBlockFormat.Q5K)
                RowsOf<Q5KCodes>(path, job, start, end, tokens);
            else
                RowsOf<Q4KCodes>(path, job, start, end, tokens);
        }
        GC.KeepAlive(weights.Owner);
    }

    private static void RowsOf<TCodes>(KernelPath path, Job job, int start, int end, int tokens) where TCodes : struct, ICodes
    {
        for (int r = start; r < end; r++)
            switch (path)
            {
                case KernelPath.Avx512: RowPasses.Tile<Avx512Passes<TCodes>, Job>(job, r, tokens); break;
                case KernelPath.AvxVnni: RowPasses.Tile<X86Passes<VnniByteDot, TCodes>, Job>(job, r, tokens); break;
                case KernelPath.Avx2: RowPasses.Tile<X86Passes<Avx2ByteDot, TCodes>, Job>(job, r, tokens); break;
                case KernelPath.Dp: RowPasses.Tile<DpPasses<TCodes>, Job>(job, r, tokens); break;
                case KernelPath.Vector128: RowPasses.Tile<Vector128Passes<TCodes>, Job>(job, r, tokens); break;
                default: RowPasses.Tile<ScalarPasses<TCodes>, Job>(job, r, tokens); break;
            }
    }

    /// <summary>
    /// Where a block keeps its codes: Q4_K's four bits from byte 16, or Q5_K's four from byte 48 with a fifth in the
    /// 32-byte plane at byte 16 (bit j of byte l: value l of sub-block j), as a type so that each compiles on its own.
    /// </summary>
    private interface ICodes
    {
        static abstract int BlockBytes { get; }
        static abstract int Nibbles { get; }
        static abstract bool FifthBit { get; }
    }

    private readonly struct Q4KCodes : ICodes
    {
        public static int BlockBytes => KBlockLayout.Q4KBlockBytes;
        public static int Nibbles => 16;
        public static bool FifthBit => false;
    }

    private readonly struct Q5KCodes : ICodes
    {
        public static int BlockBytes => KBlockLayout.Q5KBlockBytes;
        public static int Nibbles => 48;
        public static bool FifthBit => true;
    }

    // Sub-block j's fifth bits (bit j of each high-plane byte) as 16 or 0 per byte.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Fifth(Vector256<byte> high, int j) => ((high >>> j) & Vector256.Create((byte)1)) << 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Fifth(Vector128<byte> high, int j) => ((high >>> j) & Vector128.Create((byte)1)) << 4;

    private readonly unsafe struct Job(in KBlockLayout weights, sbyte* codes, float* xScales, float* scaledSums, float* y)
    {
        public readonly byte* Weights = weights.Blocks;
        public readonly sbyte* Codes = codes;
        public readonly float* XScales = xScales, ScaledSums = scaledSums, Y = y;
        public readonly long RowBytes = weights.RowBytes;
        public readonly int Rows = weights.Rows, Cols = weights.Cols, Blocks = weights.BlocksPerRow, Subs = weights.Cols / Sub;

        public byte* Row(int r) => Weights + r * RowBytes;

        // A pass's operands: row r, and token t's codes, sub-block scales and scaled code sums.
        public void Pass(int r, int t, out byte* row, out sbyte* x0, out float* xs0, out float* ss0)
        {
            row = Row(r);
            x0 = Codes + (long)t * Cols;
            xs0 = XScales + (long)t * Subs;
            ss0 = ScaledSums + (long)t * Subs;
        }

        public void Store(int r, int t, float sum) => Y[(long)t * Rows + r] = sum;

        public void Store<TTokens>(int r, int t, float s0, float s1, float s2, float s3) where TTokens : struct, IPassCount => RowPasses.Store<TTokens>(Y, Rows, r, t, s0, s1, s2, s3);
    }


    /// <summary>
    /// A block's eight 6-bit scales and eight 6-bit mins (sub-block j in byte j of each), unpacked from its twelve packed
    /// bytes as llama.cpp's <c>get_scale_min_k4</c> reads them, a 32-bit word at a time: bytes 0-3 hold scales 0-3 and
    /// bytes 4-7 mins 0-3 in their low six bits, with the top two bits of scales and mins 4-7 above them; bytes 8-11
    /// hold the low four bits of scales 4-7 (low nibble) and mins 4-7 (high nibble).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe (ulong Scales, ulong Mins) SixBitFields(byte* packed)
    {
        const uint Low6 = 0x3F3F3F3F, Low4 = 0x0F0F0F0F, Top2 = 0x03030303;
        uint w0 = Unsafe.ReadUnaligned<uint>(packed), w1 = Unsafe.ReadUnaligned<uint>(packed + 4), w2 = Unsafe.ReadUnaligned<uint>(packed + 8);
        uint scales47 = (w2 & Low4) | (((w0 >> 6) & Top2) << 4), mins47 = ((w2 >> 4) & Low4) | (((w1 >> 6) & Top2) << 4);
        return ((w0 & Low6) | ((ulong)scales47 << 32), (w1 & Low6) | ((ulong)mins47 << 32));
    }

    /// <summary>A block's super-scales d and dmin.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (float D, float Dmin) SuperScales(byte* block)
    {
        Vector128<float> both = SuperScaleVector(block);
        return (both.ToScalar(), both.GetElement(1));
    }

    /// <summary>A block's super-scales d and dmin in lanes 0 and 1, converted in vector registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> SuperScaleVector(byte* block) =>
        Float16.ToSingle(Vector128.WidenLower(Vector128.CreateScalar(Unsafe.ReadUnaligned<uint>(block)).AsUInt16()));

    // AVX-512: two sub-blocks a 512-bit register. A 32-byte run of codes is broadcast to both halves and shifted by 0
    // and 4 bits, so that the register holds sub-blocks 2k and 2k + 1 in order, against 64 consecutive x codes. Their
    // dots stay in sixteen int32 lanes (eight a sub-block), each lane scaled by its sub-block's d · scale_j · xscale_j:
    // four multiply-adds a block and token, no horizontal adds.
    private readonly struct Avx512Passes<TCodes> : IRowPasses<Job> where TCodes : struct, ICodes
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int subs = job.Subs;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0, out float* ss0);
            Vector512<byte> nibble = Vector512.Create((byte)0x0F), one = Vector512.Create((byte)1);
            Vector512<ulong> halves = Vector512.Create(0UL, 0, 0, 0, 4, 4, 4, 4);
            var lanes = new PairLanes(); // lane i of pair k's register belongs to sub-block 2k + i / 8
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> m0 = default, m1 = default, m2 = default, m3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * TCodes.BlockBytes;
                WeightPrefetch.Ahead(block);
                WeightPrefetch.Ahead(block + 64);
                WeightPrefetch.Ahead(block + 128);
                if (TCodes.FifthBit)
                    WeightPrefetch.Ahead(block + 172);
                Vector128<float> dd = SuperScaleVector(block);
                (ulong six, ulong sixMins) = SixBitFields(block + 4);
                Vector256<float> scales = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(six).AsByte())) * Vector256.Create(dd.ToScalar());
                Vector256<float> mins = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(sixMins).AsByte())) * Vector256.Create(-dd.GetElement(1));
                Vector512<float> wide = Vector512.Create(scales, scales);
                Scales4 s = new(Avx512F.PermuteVar16x32(wide, lanes.P0), Avx512F.PermuteVar16x32(wide, lanes.P1), Avx512F.PermuteVar16x32(wide, lanes.P2), Avx512F.PermuteVar16x32(wide, lanes.P3));
                byte* nibbles = block + TCodes.Nibbles;
                Vector512<byte> c0 = Codes(nibbles, halves, nibble), c1 = Codes(nibbles + 32, halves, nibble);
                Vector512<byte> c2 = Codes(nibbles + 64, halves, nibble), c3 = Codes(nibbles + 96, halves, nibble);
                if (TCodes.FifthBit)
                {
                    Vector512<ulong> plane = Vector512.Create(Vector256.Load((ulong*)(block + 16)));
                    c0 |= Fifth(plane, 0, one);
                    c1 |= Fifth(plane, 2, one);
                    c2 |= Fifth(plane, 4, one);
                    c3 |= Fifth(plane, 6, one);
                }
                int s0 = b * SubsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Token(c0, c1, c2, c3, s, lanes, mins, x0 + at, xs0 + s0, ss0 + s0, ref a0, ref m0);
                if (TTokens.Value > 1)
                    Token(c0, c1, c2, c3, s, lanes, mins, x0 + cols + at, xs0 + subs + s0, ss0 + subs + s0, ref a1, ref m1);
                if (TTokens.Value > 2)
                {
                    Token(c0, c1, c2, c3, s, lanes, mins, x0 + 2 * cols + at, xs0 + 2 * subs + s0, ss0 + 2 * subs + s0, ref a2, ref m2);
                    Token(c0, c1, c2, c3, s, lanes, mins, x0 + 3 * cols + at, xs0 + 3 * subs + s0, ss0 + 3 * subs + s0, ref a3, ref m3);
                }
            }
            job.Store<TTokens>(r, t, Vector512.Sum(a0) + Vector256.Sum(m0), Vector512.Sum(a1) + Vector256.Sum(m1),
                Vector512.Sum(a2) + Vector256.Sum(m2), Vector512.Sum(a3) + Vector256.Sum(m3));
        }

        // Sub-blocks 2k (low nibbles) and 2k + 1 (high nibbles) of a 32-byte run, in order. The run is loaded and inserted
        // twice: .NET 10's optimizer gets Avx512F.BroadcastVector256ToVector512 from memory wrong (wrong sums, caught by
        // .ci/optimized-kernel-tests).
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe Vector512<byte> Codes(byte* run, Vector512<ulong> halves, Vector512<byte> nibble) =>
            Avx512F.ShiftRightLogicalVariable(Vector512.Create(Vector256.Load((ulong*)run)), halves).AsByte() & nibble;

        // Sub-blocks j and j + 1's fifth bits as 16 or 0 per byte, in the halves their codes take.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<byte> Fifth(Vector512<ulong> plane, int j, Vector512<byte> one) =>
            ((Avx512F.ShiftRightLogicalVariable(plane, Vector512.Create(Vector256.Create((ulong)j), Vector256.Create((ulong)j + 1))).AsByte() & one).AsUInt64() << 4).AsByte();

        // One token's block: each pair's dots in sixteen int32 lanes (vpmaddubsw, then vpmaddwd against ones), scaled
        // lane by lane by d · scale_j · xscale_j (the token's eight sub-block scales permuted to the lanes); the mins by
        // −dmin · min_j · xscale_j · Σ x in a sum of their own.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Token(Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3, in Scales4 s, in PairLanes lanes,
            Vector256<float> mins, sbyte* x, float* xScales, float* scaledSums, ref Vector512<float> a, ref Vector256<float> m)
        {
            Vector512<short> ones = Vector512.Create((short)1);
            Vector512<float> xs = Vector512.Create(Vector256.Load(xScales), Vector256<float>.Zero);
            Vector512<float> even = Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c0, Vector512.Load(x)), ones)) * (s.S0 * Avx512F.PermuteVar16x32(xs, lanes.P0));
            Vector512<float> odd = Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c1, Vector512.Load(x + 64)), ones)) * (s.S1 * Avx512F.PermuteVar16x32(xs, lanes.P1));
            even = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c2, Vector512.Load(x + 128)), ones)), s.S2 * Avx512F.PermuteVar16x32(xs, lanes.P2), even);
            odd = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(c3, Vector512.Load(x + 192)), ones)), s.S3 * Avx512F.PermuteVar16x32(xs, lanes.P3), odd);
            a += even + odd;
            m = Vector256.FusedMultiplyAdd(mins, Vector256.Load(scaledSums), m);
        }
    }

    // A block's d · scale_j for each pair's sixteen lanes.
    private readonly struct Scales4(Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3)
    {
        public readonly Vector512<float> S0 = s0, S1 = s1, S2 = s2, S3 = s3;
    }

    /// <summary>A block's eight sub-block scales d · scale_j into <paramref name="scales"/> and negated mins −dmin · min_j into <paramref name="negMins"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Scales(byte* block, float* scales, float* negMins)
    {
        (float d, float dmin) = SuperScales(block);
        (ulong sc, ulong mn) = SixBitFields(block + 4);
        Vector128<byte> fields = Vector128.Create(sc, mn).AsByte();
        Vector128<ushort> sixScales = Vector128.WidenLower(fields), sixMins = Vector128.WidenUpper(fields);
        Vector128<float> dv = Vector128.Create(d), mv = Vector128.Create(-dmin);
        (Vector128.ConvertToSingle(Vector128.WidenLower(sixScales).AsInt32()) * dv).Store(scales);
        (Vector128.ConvertToSingle(Vector128.WidenUpper(sixScales).AsInt32()) * dv).Store(scales + 4);
        (Vector128.ConvertToSingle(Vector128.WidenLower(sixMins).AsInt32()) * mv).Store(negMins);
        (Vector128.ConvertToSingle(Vector128.WidenUpper(sixMins).AsInt32()) * mv).Store(negMins + 4);
    }

    private readonly struct X86Passes<TDot, TCodes> : IRowPasses<Job> where TDot : struct, IByteDot where TCodes : struct, ICodes
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int subs = job.Subs;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0, out float* ss0);
            Vector256<byte> nibble = Vector256.Create((byte)0x0F);
            // Per token, the scaled sub-block dots and the mins in sums of their own (two chains of multiply-adds).
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, m0 = default, m1 = default, m2 = default, m3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * TCodes.BlockBytes;
                WeightPrefetch.Ahead(block);
                WeightPrefetch.Ahead(block + 64);
                WeightPrefetch.Ahead(block + 128);
                if (TCodes.FifthBit)
                    WeightPrefetch.Ahead(block + 172);
                (float d, float dmin) = SuperScales(block);
                (ulong six, ulong sixMins) = SixBitFields(block + 4);
                Vector256<float> scales = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(six).AsByte())) * Vector256.Create(d);
                Vector256<float> mins = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(sixMins).AsByte())) * Vector256.Create(-dmin);
                // The block's 256 codes as eight vectors of 32 (sub-block 2k in lk, 2k + 1 in hk), shared by the tokens.
                byte* nibbles = block + TCodes.Nibbles;
                Vector256<byte> q0 = Vector256.Load(nibbles), q1 = Vector256.Load(nibbles + 32), q2 = Vector256.Load(nibbles + 64), q3 = Vector256.Load(nibbles + 96);
                Vector256<byte> l0 = q0 & nibble, h0 = Avx2.ShiftRightLogical(q0.AsUInt16(), 4).AsByte() & nibble;
                Vector256<byte> l1 = q1 & nibble, h1 = Avx2.ShiftRightLogical(q1.AsUInt16(), 4).AsByte() & nibble;
                Vector256<byte> l2 = q2 & nibble, h2 = Avx2.ShiftRightLogical(q2.AsUInt16(), 4).AsByte() & nibble;
                Vector256<byte> l3 = q3 & nibble, h3 = Avx2.ShiftRightLogical(q3.AsUInt16(), 4).AsByte() & nibble;
                if (TCodes.FifthBit)
                {
                    Vector256<byte> fifth = Vector256.Load(block + 16);
                    (l0, h0, l1, h1) = (l0 | Fifth(fifth, 0), h0 | Fifth(fifth, 1), l1 | Fifth(fifth, 2), h1 | Fifth(fifth, 3));
                    (l2, h2, l3, h3) = (l2 | Fifth(fifth, 4), h2 | Fifth(fifth, 5), l3 | Fifth(fifth, 6), h3 | Fifth(fifth, 7));
                }
                int s0 = b * SubsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Token(l0, h0, l1, h1, l2, h2, l3, h3, x0 + at, scales, mins, xs0 + s0, ss0 + s0, ref a0, ref m0);
                if (TTokens.Value > 1)
                    Token(l0, h0, l1, h1, l2, h2, l3, h3, x0 + cols + at, scales, mins, xs0 + subs + s0, ss0 + subs + s0, ref a1, ref m1);
                if (TTokens.Value > 2)
                {
                    Token(l0, h0, l1, h1, l2, h2, l3, h3, x0 + 2 * cols + at, scales, mins, xs0 + 2 * subs + s0, ss0 + 2 * subs + s0, ref a2, ref m2);
                    Token(l0, h0, l1, h1, l2, h2, l3, h3, x0 + 3 * cols + at, scales, mins, xs0 + 3 * subs + s0, ss0 + 3 * subs + s0, ref a3, ref m3);
                }
            }
            job.Store<TTokens>(r, t, Vector256.Sum(a0 + m0), Vector256.Sum(a1 + m1), Vector256.Sum(a2 + m2), Vector256.Sum(a3 + m3));
        }

        // One token's block: the eight sub-block dots folded into one vector (lane j: sub-block j) by horizontal adds,
        // then scaled by d · scale_j · xscale_j in one multiply-add; the mins by −dmin · min_j · xscale_j · Σ x in another.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Token(Vector256<byte> l0, Vector256<byte> h0, Vector256<byte> l1, Vector256<byte> h1,
            Vector256<byte> l2, Vector256<byte> h2, Vector256<byte> l3, Vector256<byte> h3, sbyte* x, Vector256<float> scales, Vector256<float> mins, float* xScales, float* scaledSums,
            ref Vector256<float> a, ref Vector256<float> m)
        {
            Vector256<int> h01 = Avx2.HorizontalAdd(TDot.Dot(l0, Vector256.Load(x)), TDot.Dot(h0, Vector256.Load(x + 32)));
            Vector256<int> h23 = Avx2.HorizontalAdd(TDot.Dot(l1, Vector256.Load(x + 64)), TDot.Dot(h1, Vector256.Load(x + 96)));
            Vector256<int> h45 = Avx2.HorizontalAdd(TDot.Dot(l2, Vector256.Load(x + 128)), TDot.Dot(h2, Vector256.Load(x + 160)));
            Vector256<int> h67 = Avx2.HorizontalAdd(TDot.Dot(l3, Vector256.Load(x + 192)), TDot.Dot(h3, Vector256.Load(x + 224)));
            // Each 128-bit half holds half of every sub-block's lanes: sub-blocks 0-3 and 4-7, then the halves added.
            Vector256<int> h0123 = Avx2.HorizontalAdd(h01, h23), h4567 = Avx2.HorizontalAdd(h45, h67);
            Vector256<int> dots = Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);
            a = Vector256.FusedMultiplyAdd(Avx.ConvertToVector256Single(dots), scales * Vector256.Load(xScales), a);
            m = Vector256.FusedMultiplyAdd(mins, Vector256.Load(scaledSums), m);
        }
    }

    // ARM64 SDOT, as the x86 pass: each sub-block's dot in four lanes (two SDOT of 16 bytes), folded by pairwise adds
    // into sub-blocks 0-3 and 4-7 and scaled in two multiply-adds per block and token.
    private readonly struct DpPasses<TCodes> : IRowPasses<Job> where TCodes : struct, ICodes
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int subs = job.Subs;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0, out float* ss0);
            Vector128<byte> nibble = Vector128.Create((byte)0x0F);
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default, m0 = default, m1 = default, m2 = default, m3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * TCodes.BlockBytes;
                (float d, float dmin) = SuperScales(block);
                (ulong six, ulong sixMins) = SixBitFields(block + 4);
                Vector128<ushort> sc = Vector128.WidenLower(Vector128.CreateScalar(six).AsByte()), mn = Vector128.WidenLower(Vector128.CreateScalar(sixMins).AsByte());
                Scaled scales = new(sc, d), mins = new(mn, -dmin);
                // The block's codes, sub-block j's 32 in two 16-byte vectors (low nibbles for even j, high for odd).
                byte* nibbles = block + TCodes.Nibbles;
                Vector128<byte> q0 = Vector128.Load(nibbles), q1 = Vector128.Load(nibbles + 16), q2 = Vector128.Load(nibbles + 32), q3 = Vector128.Load(nibbles + 48);
                Vector128<byte> q4 = Vector128.Load(nibbles + 64), q5 = Vector128.Load(nibbles + 80), q6 = Vector128.Load(nibbles + 96), q7 = Vector128.Load(nibbles + 112);
                // Sub-block 2k's codes are the low nibbles of a 32-byte run (two vectors), 2k + 1's the high ones.
                Vector128<byte> l0 = q0 & nibble, k0 = q1 & nibble, h0 = q0 >>> 4, g0 = q1 >>> 4, l1 = q2 & nibble, k1 = q3 & nibble, h1 = q2 >>> 4, g1 = q3 >>> 4;
                Vector128<byte> l2 = q4 & nibble, k2 = q5 & nibble, h2 = q4 >>> 4, g2 = q5 >>> 4, l3 = q6 & nibble, k3 = q7 & nibble, h3 = q6 >>> 4, g3 = q7 >>> 4;
                if (TCodes.FifthBit)
                {
                    // Values 0-15 of each sub-block take their fifth bits from the plane's first 16 bytes, 16-31 from the rest.
                    Vector128<byte> f = Vector128.Load(block + 16), e = Vector128.Load(block + 32);
                    (l0, k0, h0, g0, l1, k1, h1, g1) = (l0 | Fifth(f, 0), k0 | Fifth(e, 0), h0 | Fifth(f, 1), g0 | Fifth(e, 1), l1 | Fifth(f, 2), k1 | Fifth(e, 2), h1 | Fifth(f, 3), g1 | Fifth(e, 3));
                    (l2, k2, h2, g2, l3, k3, h3, g3) = (l2 | Fifth(f, 4), k2 | Fifth(e, 4), h2 | Fifth(f, 5), g2 | Fifth(e, 5), l3 | Fifth(f, 6), k3 | Fifth(e, 6), h3 | Fifth(f, 7), g3 | Fifth(e, 7));
                }
                int s0 = b * SubsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Token(l0, k0, h0, g0, l1, k1, h1, g1, l2, k2, h2, g2, l3, k3, h3, g3, x0 + at, scales, mins, xs0 + s0, ss0 + s0, ref a0, ref m0);
                if (TTokens.Value > 1)
                    Token(l0, k0, h0, g0, l1, k1, h1, g1, l2, k2, h2, g2, l3, k3, h3, g3, x0 + cols + at, scales, mins, xs0 + subs + s0, ss0 + subs + s0, ref a1, ref m1);
                if (TTokens.Value > 2)
                {
                    Token(l0, k0, h0, g0, l1, k1, h1, g1, l2, k2, h2, g2, l3, k3, h3, g3, x0 + 2 * cols + at, scales, mins, xs0 + 2 * subs + s0, ss0 + 2 * subs + s0, ref a2, ref m2);
                    Token(l0, k0, h0, g0, l1, k1, h1, g1, l2, k2, h2, g2, l3, k3, h3, g3, x0 + 3 * cols + at, scales, mins, xs0 + 3 * subs + s0, ss0 + 3 * subs + s0, ref a3, ref m3);
                }
            }
            job.Store<TTokens>(r, t, Vector128.Sum(a0 + m0), Vector128.Sum(a1 + m1), Vector128.Sum(a2 + m2), Vector128.Sum(a3 + m3));
        }

        // Eight 6-bit fields times a super-scale, as sub-blocks 0-3 and 4-7.
        private readonly struct Scaled
        {
            public readonly Vector128<float> Low, High;

            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            public Scaled(Vector128<ushort> fields, float scale)
            {
                Low = Vector128.ConvertToSingle(Vector128.WidenLower(fields).AsInt32()) * Vector128.Create(scale);
                High = Vector128.ConvertToSingle(Vector128.WidenUpper(fields).AsInt32()) * Vector128.Create(scale);
            }
        }

        // A token's block: the dots of sub-blocks 0-3 and 4-7 folded into a lane each, scaled by d · scale_j · xscale_j;
        // the mins in a sum of their own.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Token(Vector128<byte> l0, Vector128<byte> k0, Vector128<byte> h0, Vector128<byte> g0, Vector128<byte> l1, Vector128<byte> k1,
            Vector128<byte> h1, Vector128<byte> g1, Vector128<byte> l2, Vector128<byte> k2, Vector128<byte> h2, Vector128<byte> g2, Vector128<byte> l3,
            Vector128<byte> k3, Vector128<byte> h3, Vector128<byte> g3, sbyte* x, Scaled scales, Scaled mins, float* xScales, float* scaledSums,
            ref Vector128<float> a, ref Vector128<float> m)
        {
            Vector128<int> first = Fold(l0, k0, h0, g0, l1, k1, h1, g1, x), second = Fold(l2, k2, h2, g2, l3, k3, h3, g3, x + 128);
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(first), scales.Low * Vector128.Load(xScales), a);
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(second), scales.High * Vector128.Load(xScales + 4), a);
            m = Vector128.FusedMultiplyAdd(mins.Low, Vector128.Load(scaledSums), m);
            m = Vector128.FusedMultiplyAdd(mins.High, Vector128.Load(scaledSums + 4), m);
        }

        // Four sub-blocks' dots (each two 16-byte halves: a/b, c/d, e/f, g/h) against the 128 x codes at x, one a lane.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe Vector128<int> Fold(Vector128<byte> a, Vector128<byte> b, Vector128<byte> c, Vector128<byte> d,
            Vector128<byte> e, Vector128<byte> f, Vector128<byte> g, Vector128<byte> h, sbyte* x) => AdvSimd.Arm64.AddPairwise(
            AdvSimd.Arm64.AddPairwise(SdotDot(a, b, x), SdotDot(c, d, x + 32)),
            AdvSimd.Arm64.AddPairwise(SdotDot(e, f, x + 64), SdotDot(g, h, x + 96)));
    }

    // 32 codes (two 16-byte halves, 0..15) against 32 x codes at x, in four int32 lanes: SDOT.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<int> SdotDot(Vector128<byte> u0, Vector128<byte> u1, sbyte* x) =>
        Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, u0.AsSByte(), Vector128.Load(x)), u1.AsSByte(), Vector128.Load(x + 16));

    // The same without a dot-product instruction: products in int16 (at most 31 · 128 each, four summed per lane:
    // exact), then widened to int32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<int> WideningDot(Vector128<byte> u0, Vector128<byte> u1, sbyte* x)
    {
        Vector128<sbyte> x0 = Vector128.Load(x), x1 = Vector128.Load(x + 16);
        Vector128<short> p = Vector128.WidenLower(u0).AsInt16() * Vector128.WidenLower(x0) + Vector128.WidenUpper(u0).AsInt16() * Vector128.WidenUpper(x0)
            + Vector128.WidenLower(u1).AsInt16() * Vector128.WidenLower(x1) + Vector128.WidenUpper(u1).AsInt16() * Vector128.WidenUpper(x1);
        return Vector128.WidenLower(p) + Vector128.WidenUpper(p);
    }

    // Portable Vector128 (SSE, or NEON without SDOT): each sub-block's four lanes scaled into the float sums.
    private readonly struct Vector128Passes<TCodes> : IRowPasses<Job> where TCodes : struct, ICodes
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int subs = job.Subs;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0, out float* ss0);
            float* scales = stackalloc float[2 * SubsPerBlock];
            float* negMins = scales + SubsPerBlock;
            Vector128<byte> nibble = Vector128.Create((byte)0x0F);
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * TCodes.BlockBytes;
                Scales(block, scales, negMins);
                int s0 = b * SubsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Vector128<byte> f = TCodes.FifthBit ? Vector128.Load(block + 16) : default, e = TCodes.FifthBit ? Vector128.Load(block + 32) : default;
                Vector128<float> m0 = Vector128.Load(negMins), m1 = Vector128.Load(negMins + 4);
                Mins(m0, m1, ss0 + s0, ref a0);
                if (TTokens.Value > 1)
                    Mins(m0, m1, ss0 + subs + s0, ref a1);
                if (TTokens.Value > 2)
                {
                    Mins(m0, m1, ss0 + 2 * subs + s0, ref a2);
                    Mins(m0, m1, ss0 + 3 * subs + s0, ref a3);
                }
                for (int j = 0; j < SubsPerBlock / 2; j++)
                {
                    Vector128<byte> c0 = Vector128.Load(block + TCodes.Nibbles + 32 * j), c1 = Vector128.Load(block + TCodes.Nibbles + 16 + 32 * j);
                    Vector128<byte> lo0 = c0 & nibble, lo1 = c1 & nibble, hi0 = c0 >>> 4, hi1 = c1 >>> 4;
                    if (TCodes.FifthBit)
                        (lo0, lo1, hi0, hi1) = (lo0 | Fifth(f, 2 * j), lo1 | Fifth(e, 2 * j), hi0 | Fifth(f, 2 * j + 1), hi1 | Fifth(e, 2 * j + 1));
                    float sl = scales[2 * j], sh = scales[2 * j + 1];
                    int s = s0 + 2 * j;
                    nint c = at + 64 * j;
                    Step(lo0, lo1, hi0, hi1, x0 + c, sl * xs0[s], sh * xs0[s + 1], ref a0);
                    if (TTokens.Value > 1)
                        Step(lo0, lo1, hi0, hi1, x0 + cols + c, sl * xs0[subs + s], sh * xs0[subs + s + 1], ref a1);
                    if (TTokens.Value > 2)
                    {
                        Step(lo0, lo1, hi0, hi1, x0 + 2 * cols + c, sl * xs0[2 * subs + s], sh * xs0[2 * subs + s + 1], ref a2);
                        Step(lo0, lo1, hi0, hi1, x0 + 3 * cols + c, sl * xs0[3 * subs + s], sh * xs0[3 * subs + s + 1], ref a3);
                    }
                }
            }
            job.Store<TTokens>(r, t, Vector128.Sum(a0), Vector128.Sum(a1), Vector128.Sum(a2), Vector128.Sum(a3));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Mins(Vector128<float> m0, Vector128<float> m1, float* scaledSums, ref Vector128<float> a)
        {
            a = Vector128.FusedMultiplyAdd(m0, Vector128.Load(scaledSums), a);
            a = Vector128.FusedMultiplyAdd(m1, Vector128.Load(scaledSums + 4), a);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Step(Vector128<byte> lo0, Vector128<byte> lo1, Vector128<byte> hi0, Vector128<byte> hi1, sbyte* x, float scaleLo, float scaleHi, ref Vector128<float> a)
        {
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(WideningDot(lo0, lo1, x)), Vector128.Create(scaleLo), a);
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(WideningDot(hi0, hi1, x + 32)), Vector128.Create(scaleHi), a);
        }
    }

    // Any CPU: one token at a time, a sub-block's dot in an int, the same terms summed in a float.
    private readonly struct ScalarPasses<TCodes> : IRowPasses<Job> where TCodes : struct, ICodes
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            float* scales = stackalloc float[2 * SubsPerBlock];
            float* negMins = scales + SubsPerBlock;
            byte* row = job.Row(r);
            for (int k = t; k < t + TTokens.Value; k++)
            {
                sbyte* x = job.Codes + (long)k * job.Cols;
                float* xs = job.XScales + (long)k * job.Subs, ss = job.ScaledSums + (long)k * job.Subs;
                float sum = 0;
                for (int b = 0; b < job.Blocks; b++)
                {
                    byte* block = row + b * TCodes.BlockBytes;
                    Scales(block, scales, negMins);
                    for (int j = 0; j < SubsPerBlock; j++)
                    {
                        int s = b * SubsPerBlock + j, shift = 4 * (j & 1), dot = 0;
                        byte* codes = block + TCodes.Nibbles + 32 * (j / 2), fifth = block + 16;
                        sbyte* xj = x + s * Sub;
                        for (int i = 0; i < Sub; i++)
                            dot += (((codes[i] >> shift) & 0x0F) | (TCodes.FifthBit ? ((fifth[i] >> j) & 1) << 4 : 0)) * xj[i];
                        sum += scales[j] * xs[s] * dot + negMins[j] * ss[s];
                    }
                }
                job.Store(r, k, sum);
            }
        }
    }
}
