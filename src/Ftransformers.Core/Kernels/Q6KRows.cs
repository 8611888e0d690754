using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Q6_K rows (<see cref="KBlockLayout"/>, read in place) against activations quantized to INT8 per block of 32:
/// y[t * rows + r] = Σ over groups g of 32 values of d · xscale_tg · I_g, where
/// I_g = Σ over the group's two sub-blocks j of scale_j · Σ (code − 32) · x code, exact in integers. A block's codes
/// (six bits, rebuilt from their two planes) and scales are unpacked once per pass and shared by the pass's tokens.
/// On x86 a group's products are vpmaddubsw pairs (codes 0..63 as the unsigned operand) minus 32 · the x codes' pairs,
/// scaled by vpmaddwd; with AVX-512 two groups fill a register and their sums stay in int32 lanes, each lane scaled by
/// d · xscale of its group; with AVX2 a token's eight groups are folded by horizontal adds into one vector (lane g:
/// group g), scaled by d · xscale in one multiply-add per block. On ARM64 SDOT each sub-block's dot of (code − 32) and
/// x codes is scaled in int32 and the groups are folded by pairwise adds; the portable Vector128 path widens to int16
/// and scales each group into the float sums.
/// Measured on one Zen5 core, 16384 x 7168 matrices streamed from memory: AVX-512 against AVX2 1.1x at one token
/// (about 21 GB/s), 1.5x at four tokens a pass.
/// Paths: AVX-512 (BW), AVX2 (also taken on AVX-VNNI CPUs: vpdpbusd's 4-byte sums would need an int32 multiply per
/// sub-block scale, where vpmaddubsw + vpmaddwd apply it for free), ARM64 SDOT, portable Vector128 and scalar. A row is
/// one sequential stream; tokens go four a pass, then two, then one, and a (row, token) result takes the same
/// operations in the same order whichever tokens share its pass.
/// </summary>
public static class Q6KRows
{
    private const int Group = 32, GroupsPerBlock = KBlockLayout.BlockValues / Group;

    /// <summary>The path <see cref="Rows"/> takes on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        Avx512BW.IsSupported ? KernelPath.Avx512 : Avx2.IsSupported ? KernelPath.Avx2 : Dp.IsSupported ? KernelPath.Dp : Vector128.IsHardwareAccelerated ? KernelPath.Vector128 : KernelPath.Scalar;

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) for every token of <paramref name="x"/> (quantized per block of 32).</summary>
    public static void Rows(in KBlockLayout weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(ActivePath, weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, in KBlockLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (weights.Format != KBlockFormat.Q6K)
            throw new ArgumentException($"The Q6_K kernel reads Q6_K blocks, not {KBlockLayout.NameOf(weights.Format)}.", nameof(weights));
        int tokens = x.Tokens, rows = weights.Rows, cols = weights.Cols;
        if (x.Cols != cols || x.BlockSize != Group)
            throw new ArgumentException($"Activations must be {cols} values per token in blocks of {Group}, got {x.Cols} in blocks of {x.BlockSize}.", nameof(x));
        if (y.Length < (long)(tokens - 1) * rows + end)
            throw new ArgumentException($"The output needs {tokens} x {rows} values.", nameof(y));
        if ((uint)start > (uint)end || end > rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {rows} rows.");
        bool supported = path switch
        {
            KernelPath.Avx512 => Avx512BW.IsSupported,
            KernelPath.Avx2 => Avx2.IsSupported,
            KernelPath.Dp => Dp.IsSupported,
            KernelPath.Vector128 or KernelPath.Scalar => true,
            _ => false,
        };
        if (!supported)
            throw new PlatformNotSupportedException($"The Q6_K kernel has no {path} path on this CPU.");
        fixed (sbyte* codes = x.AllValues)
        fixed (float* xScales = x.AllScales)
        fixed (float* ys = y)
        {
            var job = new Job(weights, codes, xScales, ys);
            for (int r = start; r < end; r++)
                switch (path)
                {
                    case KernelPath.Avx512: RowPasses.Tile<Avx512Passes, Job>(job, r, tokens); break;
                    case KernelPath.Avx2: RowPasses.Tile<Avx2Passes, Job>(job, r, tokens); break;
                    case KernelPath.Dp: RowPasses.Tile<DpPasses, Job>(job, r, tokens); break;
                    case KernelPath.Vector128: RowPasses.Tile<Vector128Passes, Job>(job, r, tokens); break;
                    default: RowPasses.Tile<ScalarPasses, Job>(job, r, tokens); break;
                }
        }
        GC.KeepAlive(weights.Owner);
    }

    private readonly unsafe struct Job(in KBlockLayout weights, sbyte* codes, float* xScales, float* y)
    {
        public readonly byte* Weights = weights.Blocks;
        public readonly sbyte* Codes = codes;
        public readonly float* XScales = xScales, Y = y;
        public readonly long RowBytes = weights.RowBytes;
        public readonly int Rows = weights.Rows, Cols = weights.Cols, Blocks = weights.BlocksPerRow, Groups = weights.Cols / Group;

        public byte* Row(int r) => Weights + r * RowBytes;

        // A pass's operands: row r, and token t's codes and group scales.
        public void Pass(int r, int t, out byte* row, out sbyte* x0, out float* xs0)
        {
            row = Row(r);
            x0 = Codes + (long)t * Cols;
            xs0 = XScales + (long)t * Groups;
        }

        public void Store(int r, int t, float sum) => Y[(long)t * Rows + r] = sum;

        public void Store<TTokens>(int r, int t, float s0, float s1, float s2, float s3) where TTokens : struct, IPassCount => RowPasses.Store<TTokens>(Y, Rows, r, t, s0, s1, s2, s3);
    }

    // A block's super-scale d, stored after its codes and scales.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe float SuperScale(byte* block) => Float16.ToSingle(Unsafe.ReadUnaligned<ushort>(block + 208));

    // AVX-512: two groups of 32 a 512-bit register (a half block's 64 low-plane bytes, low nibbles then high, with the
    // high plane's bit pairs shifted into place), each 16-value sub-block's scale in its eight int16 lanes. The groups'
    // sums stay in int32 lanes (eight a group), each lane scaled by d · xscale of its group: four multiply-adds a block
    // and token, no horizontal adds, and half the integer multiplies of the 256-bit pass.
    private readonly struct Avx512Passes : IRowPasses<Job>
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int groups = job.Groups;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0);
            Vector512<byte> low4 = Vector512.Create((byte)0x0F), top2 = Vector512.Create((byte)0x30);
            // Bit pairs 0-1 and 2-3 of the high plane go up by 4 and 2 bits, pairs 4-5 and 6-7 down by 0 and 2.
            Vector512<ulong> up = Vector512.Create(4UL, 4, 4, 4, 2, 2, 2, 2), down = Vector512.Create(0UL, 0, 0, 0, 2, 2, 2, 2);
            // Word w of a register of four sub-blocks takes sub-block w / 8; int32 lane i of register k takes group 2k + i / 8.
            Vector512<short> quarter = Vector512.Create(Vector256.Create((short)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), Vector256.Create((short)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
            Vector512<short> four = Vector512.Create((short)4);
            var lanes = new PairLanes();
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * KBlockLayout.Q6KBlockBytes;
                WeightPrefetch.Ahead(block);
                WeightPrefetch.Ahead(block + 64);
                WeightPrefetch.Ahead(block + 128);
                WeightPrefetch.Ahead(block + 192);
                float d = SuperScale(block);
                Vector256<short> scales = Avx2.ConvertToVector256Int16((sbyte*)block + 192);
                Vector512<short> scale16 = Vector512.Create(scales, scales);
                var s = new Quarters(Avx512BW.PermuteVar32x16(scale16, quarter), Avx512BW.PermuteVar32x16(scale16, quarter + four),
                    Avx512BW.PermuteVar32x16(scale16, quarter + four + four), Avx512BW.PermuteVar32x16(scale16, quarter + four + four + four));
                // Half h's groups 0, 1 (low nibbles) in c(2h), groups 2, 3 (high nibbles) in c(2h + 1). The high plane is
                // loaded and inserted twice (not broadcast from memory: .NET 10's optimizer gets that wrong).
                Vector512<byte> l0 = Vector512.Load(block), l1 = Vector512.Load(block + 64);
                Vector512<ulong> h0 = Vector512.Create(Vector256.Load((ulong*)(block + 128))), h1 = Vector512.Create(Vector256.Load((ulong*)(block + 160)));
                Vector512<byte> c0 = (l0 & low4) | (Avx512F.ShiftLeftLogicalVariable(h0, up).AsByte() & top2);
                Vector512<byte> c1 = (Avx512F.ShiftRightLogical(l0.AsUInt64(), 4).AsByte() & low4) | (Avx512F.ShiftRightLogicalVariable(h0, down).AsByte() & top2);
                Vector512<byte> c2 = (l1 & low4) | (Avx512F.ShiftLeftLogicalVariable(h1, up).AsByte() & top2);
                Vector512<byte> c3 = (Avx512F.ShiftRightLogical(l1.AsUInt64(), 4).AsByte() & low4) | (Avx512F.ShiftRightLogicalVariable(h1, down).AsByte() & top2);
                int gb = b * GroupsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Token(c0, c1, c2, c3, s, lanes, x0 + at, d, xs0 + gb, ref a0);
                if (TTokens.Value > 1)
                    Token(c0, c1, c2, c3, s, lanes, x0 + cols + at, d, xs0 + groups + gb, ref a1);
                if (TTokens.Value > 2)
                {
                    Token(c0, c1, c2, c3, s, lanes, x0 + 2 * cols + at, d, xs0 + 2 * groups + gb, ref a2);
                    Token(c0, c1, c2, c3, s, lanes, x0 + 3 * cols + at, d, xs0 + 3 * groups + gb, ref a3);
                }
            }
            job.Store<TTokens>(r, t, Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3));
        }

        // One token's block: each register's code pairs minus 32 · x pairs (int16, exact as on the 256-bit path), scaled
        // and paired by vpmaddwd into int32 lanes, and each lane scaled by d · xscale of its group.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Token(Vector512<byte> c0, Vector512<byte> c1, Vector512<byte> c2, Vector512<byte> c3, in Quarters s, in PairLanes lanes,
            sbyte* x, float d, float* xScales, ref Vector512<float> a)
        {
            Vector512<float> scaled = Vector512.Create(Vector256.Load(xScales) * Vector256.Create(d), Vector256<float>.Zero);
            Vector512<float> even = Vector512.ConvertToSingle(Quarter(c0, s.S0, x)) * Avx512F.PermuteVar16x32(scaled, lanes.P0);
            Vector512<float> odd = Vector512.ConvertToSingle(Quarter(c1, s.S1, x + 64)) * Avx512F.PermuteVar16x32(scaled, lanes.P1);
            even = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Quarter(c2, s.S2, x + 128)), Avx512F.PermuteVar16x32(scaled, lanes.P2), even);
            odd = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Quarter(c3, s.S3, x + 192)), Avx512F.PermuteVar16x32(scaled, lanes.P3), odd);
            a += even + odd;
        }

        // Two groups' Σ scale · (code − 32) · x in sixteen int32 lanes.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe Vector512<int> Quarter(Vector512<byte> codes, Vector512<short> scales, sbyte* x)
        {
            Vector512<sbyte> xv = Vector512.Load(x);
            return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(codes, xv) - Avx512BW.MultiplyAddAdjacent(Vector512.Create((byte)32), xv), scales);
        }
    }

    // A block's scale words for each register of four sub-blocks.
    private readonly struct Quarters(Vector512<short> s0, Vector512<short> s1, Vector512<short> s2, Vector512<short> s3)
    {
        public readonly Vector512<short> S0 = s0, S1 = s1, S2 = s2, S3 = s3;
    }

    private readonly struct Avx2Passes : IRowPasses<Job>
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int groups = job.Groups;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * KBlockLayout.Q6KBlockBytes;
                WeightPrefetch.Ahead(block);
                WeightPrefetch.Ahead(block + 64);
                WeightPrefetch.Ahead(block + 128);
                WeightPrefetch.Ahead(block + 192);
                Vector256<float> d = Vector256.Create(SuperScale(block));
                // The block's codes as eight vectors of 32 (group g in qg), and each group's two sub-block scales as
                // int16 (the first sub-block's in the low 128 bits, the second's in the high), shared by the tokens.
                Codes(block, 0, out Vector256<byte> q0, out Vector256<byte> q1, out Vector256<byte> q2, out Vector256<byte> q3);
                Codes(block, 1, out Vector256<byte> q4, out Vector256<byte> q5, out Vector256<byte> q6, out Vector256<byte> q7);
                Vector128<sbyte> scales = Vector128.Load((sbyte*)block + 192);
                Vector256<short> s0 = Pair(scales, 0), s1 = Pair(scales, 1), s2 = Pair(scales, 2), s3 = Pair(scales, 3);
                Vector256<short> s4 = Pair(scales, 4), s5 = Pair(scales, 5), s6 = Pair(scales, 6), s7 = Pair(scales, 7);
                int g0 = b * GroupsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Token(q0, q1, q2, q3, q4, q5, q6, q7, s0, s1, s2, s3, s4, s5, s6, s7, x0 + at, d, xs0 + g0, ref a0);
                if (TTokens.Value > 1)
                    Token(q0, q1, q2, q3, q4, q5, q6, q7, s0, s1, s2, s3, s4, s5, s6, s7, x0 + cols + at, d, xs0 + groups + g0, ref a1);
                if (TTokens.Value > 2)
                {
                    Token(q0, q1, q2, q3, q4, q5, q6, q7, s0, s1, s2, s3, s4, s5, s6, s7, x0 + 2 * cols + at, d, xs0 + 2 * groups + g0, ref a2);
                    Token(q0, q1, q2, q3, q4, q5, q6, q7, s0, s1, s2, s3, s4, s5, s6, s7, x0 + 3 * cols + at, d, xs0 + 3 * groups + g0, ref a3);
                }
            }
            job.Store<TTokens>(r, t, Vector256.Sum(a0), Vector256.Sum(a1), Vector256.Sum(a2), Vector256.Sum(a3));
        }

        // The 6-bit codes of a half block as four groups of 32: the nibbles of its two 32-byte runs of the low plane, with
        // bit pairs 0-1, 2-3, 4-5 and 6-7 of its 32 high-plane bytes on top.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Codes(byte* block, int half, out Vector256<byte> k0, out Vector256<byte> k1, out Vector256<byte> k2, out Vector256<byte> k3)
        {
            Vector256<byte> low4 = Vector256.Create((byte)0x0F), top2 = Vector256.Create((byte)0x30);
            byte* low = block + 64 * half;
            Vector256<byte> l0 = Vector256.Load(low), l1 = Vector256.Load(low + 32), h = Vector256.Load(block + 128 + 32 * half);
            // 16-bit shifts: the bits a byte takes from its neighbour fall outside the masks.
            k0 = (l0 & low4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 4).AsByte() & top2);
            k1 = (l1 & low4) | (Avx2.ShiftLeftLogical(h.AsUInt16(), 2).AsByte() & top2);
            k2 = (Avx2.ShiftRightLogical(l0.AsUInt16(), 4).AsByte() & low4) | (h & top2);
            k3 = (Avx2.ShiftRightLogical(l1.AsUInt16(), 4).AsByte() & low4) | (Avx2.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & top2);
        }

        // Sub-blocks 2g and 2g + 1's scales as int16: eight lanes each, in the low and high 128 bits.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<short> Pair(Vector128<sbyte> scales, int g) =>
            Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, Vector128.Create(0x0101010101010101UL * (ulong)(2 * g), 0x0101010101010101UL * (ulong)(2 * g + 1)).AsSByte()));

        // One token's block: each group's I_g in one vector (lane g) by horizontal adds, then scaled by d · xscale_g.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Token(Vector256<byte> q0, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3,
            Vector256<byte> q4, Vector256<byte> q5, Vector256<byte> q6, Vector256<byte> q7,
            Vector256<short> s0, Vector256<short> s1, Vector256<short> s2, Vector256<short> s3,
            Vector256<short> s4, Vector256<short> s5, Vector256<short> s6, Vector256<short> s7,
            sbyte* x, Vector256<float> d, float* xScales, ref Vector256<float> a)
        {
            Vector256<int> h01 = Avx2.HorizontalAdd(GroupDot(q0, s0, x), GroupDot(q1, s1, x + 32));
            Vector256<int> h23 = Avx2.HorizontalAdd(GroupDot(q2, s2, x + 64), GroupDot(q3, s3, x + 96));
            Vector256<int> h45 = Avx2.HorizontalAdd(GroupDot(q4, s4, x + 128), GroupDot(q5, s5, x + 160));
            Vector256<int> h67 = Avx2.HorizontalAdd(GroupDot(q6, s6, x + 192), GroupDot(q7, s7, x + 224));
            // Each 128-bit half holds half of every group's lanes: groups 0-3 and 4-7, then the halves added.
            Vector256<int> h0123 = Avx2.HorizontalAdd(h01, h23), h4567 = Avx2.HorizontalAdd(h45, h67);
            Vector256<int> dots = Avx2.Permute2x128(h0123, h4567, 0x20) + Avx2.Permute2x128(h0123, h4567, 0x31);
            a = Vector256.FusedMultiplyAdd(Avx.ConvertToVector256Single(dots), d * Vector256.Load(xScales), a);
        }

        // A group's scale_j · (code − 32) · x in eight int32 lanes: code pairs minus 32 · x pairs in int16 (at most
        // 63 · 128 · 2 + 32 · 128 · 2 in magnitude: exact), then scaled and paired by vpmaddwd.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe Vector256<int> GroupDot(Vector256<byte> codes, Vector256<short> scales, sbyte* x)
        {
            Vector256<sbyte> xv = Vector256.Load(x);
            Vector256<short> pairs = Avx2.MultiplyAddAdjacent(codes, xv) - Avx2.MultiplyAddAdjacent(Vector256.Create((byte)32), xv);
            return Avx2.MultiplyAddAdjacent(pairs, scales);
        }
    }

    // ARM64 SDOT: each sub-block's dot of (code − 32) and x codes in four lanes, a group's two sub-blocks paired and
    // scaled in int32, the groups folded by pairwise adds into groups 0-3 and 4-7 and scaled in two multiply-adds.
    private readonly struct DpPasses : IRowPasses<Job>
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int groups = job.Groups;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0);
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * KBlockLayout.Q6KBlockBytes;
                Vector128<float> d = Vector128.Create(SuperScale(block));
                // Each half's groups k = 0..3 as two sub-blocks of 16 signed codes (ak, bk; ck, dk), shared by the tokens.
                (Vector128<sbyte> a0_, Vector128<sbyte> a1_, Vector128<sbyte> a2_, Vector128<sbyte> a3_) = Quarter(block, 0, 0);
                (Vector128<sbyte> b0_, Vector128<sbyte> b1_, Vector128<sbyte> b2_, Vector128<sbyte> b3_) = Quarter(block, 0, 16);
                (Vector128<sbyte> c0_, Vector128<sbyte> c1_, Vector128<sbyte> c2_, Vector128<sbyte> c3_) = Quarter(block, 1, 0);
                (Vector128<sbyte> d0_, Vector128<sbyte> d1_, Vector128<sbyte> d2_, Vector128<sbyte> d3_) = Quarter(block, 1, 16);
                // Group g's scales as [s2g, s2g, s2g+1, s2g+1], against its two sub-blocks' pairwise-added dots.
                Vector128<sbyte> scales = Vector128.Load((sbyte*)block + 192);
                Vector128<short> sLow = Vector128.WidenLower(scales), sHigh = Vector128.WidenUpper(scales);
                Vector128<int> sc0 = Vector128.WidenLower(sLow), sc1 = Vector128.WidenUpper(sLow), sc2 = Vector128.WidenLower(sHigh), sc3 = Vector128.WidenUpper(sHigh);
                Vector128<int> p0 = AdvSimd.Arm64.ZipLow(sc0, sc0), p1 = AdvSimd.Arm64.ZipHigh(sc0, sc0), p2 = AdvSimd.Arm64.ZipLow(sc1, sc1), p3 = AdvSimd.Arm64.ZipHigh(sc1, sc1);
                Vector128<int> p4 = AdvSimd.Arm64.ZipLow(sc2, sc2), p5 = AdvSimd.Arm64.ZipHigh(sc2, sc2), p6 = AdvSimd.Arm64.ZipLow(sc3, sc3), p7 = AdvSimd.Arm64.ZipHigh(sc3, sc3);
                int g0 = b * GroupsPerBlock;
                nint at = b * KBlockLayout.BlockValues;
                Token(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, c0_, d0_, c1_, d1_, c2_, d2_, c3_, d3_, p0, p1, p2, p3, p4, p5, p6, p7, x0 + at, d, xs0 + g0, ref a0);
                if (TTokens.Value > 1)
                    Token(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, c0_, d0_, c1_, d1_, c2_, d2_, c3_, d3_, p0, p1, p2, p3, p4, p5, p6, p7, x0 + cols + at, d, xs0 + groups + g0, ref a1);
                if (TTokens.Value > 2)
                {
                    Token(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, c0_, d0_, c1_, d1_, c2_, d2_, c3_, d3_, p0, p1, p2, p3, p4, p5, p6, p7, x0 + 2 * cols + at, d, xs0 + 2 * groups + g0, ref a2);
                    Token(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, c0_, d0_, c1_, d1_, c2_, d2_, c3_, d3_, p0, p1, p2, p3, p4, p5, p6, p7, x0 + 3 * cols + at, d, xs0 + 3 * groups + g0, ref a3);
                }
            }
            job.Store<TTokens>(r, t, Vector128.Sum(a0), Vector128.Sum(a1), Vector128.Sum(a2), Vector128.Sum(a3));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Token(Vector128<sbyte> a0, Vector128<sbyte> b0, Vector128<sbyte> a1, Vector128<sbyte> b1,
            Vector128<sbyte> a2, Vector128<sbyte> b2, Vector128<sbyte> a3, Vector128<sbyte> b3,
            Vector128<sbyte> c0, Vector128<sbyte> d0, Vector128<sbyte> c1, Vector128<sbyte> d1,
            Vector128<sbyte> c2, Vector128<sbyte> d2, Vector128<sbyte> c3, Vector128<sbyte> d3,
            Vector128<int> p0, Vector128<int> p1, Vector128<int> p2, Vector128<int> p3,
            Vector128<int> p4, Vector128<int> p5, Vector128<int> p6, Vector128<int> p7, sbyte* x, Vector128<float> d, float* xScales, ref Vector128<float> a)
        {
            Vector128<int> first = Fold(Scaled(a0, b0, p0, x), Scaled(a1, b1, p1, x + 32), Scaled(a2, b2, p2, x + 64), Scaled(a3, b3, p3, x + 96));
            Vector128<int> second = Fold(Scaled(c0, d0, p4, x + 128), Scaled(c1, d1, p5, x + 160), Scaled(c2, d2, p6, x + 192), Scaled(c3, d3, p7, x + 224));
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(first), d * Vector128.Load(xScales), a);
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(second), d * Vector128.Load(xScales + 4), a);
        }

        // A group's two sub-blocks (16 signed codes each) against its 32 x codes: each dot's four lanes added in pairs,
        // [a, a, b, b], times the scales.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe Vector128<int> Scaled(Vector128<sbyte> first, Vector128<sbyte> second, Vector128<int> scales, sbyte* x) =>
            AdvSimd.Arm64.AddPairwise(Dp.DotProduct(Vector128<int>.Zero, first, Vector128.Load(x)), Dp.DotProduct(Vector128<int>.Zero, second, Vector128.Load(x + 16))) * scales;

        // Four groups' paired lanes into one lane each.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector128<int> Fold(Vector128<int> g0, Vector128<int> g1, Vector128<int> g2, Vector128<int> g3) =>
            AdvSimd.Arm64.AddPairwise(AdvSimd.Arm64.AddPairwise(g0, g1), AdvSimd.Arm64.AddPairwise(g2, g3));
    }

    // Sixteen values of each of a half block's four groups, minus 32, as signed bytes: those at `offset` (0 or 16) of
    // each group, from the low nibbles of its two 32-byte low-plane runs, then their high nibbles, with bit pairs 0-1,
    // 2-3, 4-5 and 6-7 of the high plane on top.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (Vector128<sbyte>, Vector128<sbyte>, Vector128<sbyte>, Vector128<sbyte>) Quarter(byte* block, int half, int offset)
    {
        byte* low = block + 64 * half + offset;
        Vector128<byte> l0 = Vector128.Load(low), l1 = Vector128.Load(low + 32), h = Vector128.Load(block + 128 + 32 * half + offset);
        Vector128<byte> low4 = Vector128.Create((byte)0x0F), top2 = Vector128.Create((byte)0x30), bias = Vector128.Create((byte)32);
        return ((((l0 & low4) | ((h << 4) & top2)) - bias).AsSByte(), (((l1 & low4) | ((h << 2) & top2)) - bias).AsSByte(),
            (((l0 >>> 4) | (h & top2)) - bias).AsSByte(), (((l1 >>> 4) | ((h >>> 2) & top2)) - bias).AsSByte());
    }

    // Portable Vector128 (SSE, or NEON without SDOT): each sub-block's dot in int16 products widened to int32, a group's
    // two scaled in int32, and the group scaled into the float sums.
    private readonly struct Vector128Passes : IRowPasses<Job>
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int groups = job.Groups;
            job.Pass(r, t, out byte* row, out sbyte* x0, out float* xs0);
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * KBlockLayout.Q6KBlockBytes;
                float d = SuperScale(block);
                for (int half = 0; half < 2; half++)
                {
                    (Vector128<sbyte> a0_, Vector128<sbyte> a1_, Vector128<sbyte> a2_, Vector128<sbyte> a3_) = Quarter(block, half, 0);
                    (Vector128<sbyte> b0_, Vector128<sbyte> b1_, Vector128<sbyte> b2_, Vector128<sbyte> b3_) = Quarter(block, half, 16);
                    sbyte* sc = (sbyte*)block + 192 + 8 * half;
                    int g = b * GroupsPerBlock + 4 * half;
                    nint at = b * KBlockLayout.BlockValues + 128 * half;
                    Half(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, sc, x0 + at, d, xs0 + g, ref a0);
                    if (TTokens.Value > 1)
                        Half(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, sc, x0 + cols + at, d, xs0 + groups + g, ref a1);
                    if (TTokens.Value > 2)
                    {
                        Half(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, sc, x0 + 2 * cols + at, d, xs0 + 2 * groups + g, ref a2);
                        Half(a0_, b0_, a1_, b1_, a2_, b2_, a3_, b3_, sc, x0 + 3 * cols + at, d, xs0 + 3 * groups + g, ref a3);
                    }
                }
            }
            job.Store<TTokens>(r, t, Vector128.Sum(a0), Vector128.Sum(a1), Vector128.Sum(a2), Vector128.Sum(a3));
        }

        // One token's four groups of a half block.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Half(Vector128<sbyte> a0, Vector128<sbyte> b0, Vector128<sbyte> a1, Vector128<sbyte> b1,
            Vector128<sbyte> a2, Vector128<sbyte> b2, Vector128<sbyte> a3, Vector128<sbyte> b3, sbyte* scales, sbyte* x, float d, float* xScales, ref Vector128<float> a)
        {
            GroupInto(a0, b0, scales[0], scales[1], x, d * xScales[0], ref a);
            GroupInto(a1, b1, scales[2], scales[3], x + 32, d * xScales[1], ref a);
            GroupInto(a2, b2, scales[4], scales[5], x + 64, d * xScales[2], ref a);
            GroupInto(a3, b3, scales[6], scales[7], x + 96, d * xScales[3], ref a);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void GroupInto(Vector128<sbyte> first, Vector128<sbyte> second, int scaleFirst, int scaleSecond, sbyte* x, float scale, ref Vector128<float> a)
        {
            Vector128<int> group = WideningDot(first, Vector128.Load(x)) * scaleFirst + WideningDot(second, Vector128.Load(x + 16)) * scaleSecond;
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(group), Vector128.Create(scale), a);
        }

        // Sixteen signed products (each at most 32 · 128) in int16, paired, then widened and paired again: four lanes.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector128<int> WideningDot(Vector128<sbyte> codes, Vector128<sbyte> x)
        {
            Vector128<short> p = Vector128.WidenLower(codes) * Vector128.WidenLower(x) + Vector128.WidenUpper(codes) * Vector128.WidenUpper(x);
            return Vector128.WidenLower(p) + Vector128.WidenUpper(p);
        }
    }

    // Any CPU: one token at a time, a group's I_g in an int, scaled into a float sum.
    private readonly struct ScalarPasses : IRowPasses<Job>
    {
        [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            byte* row = job.Row(r);
            for (int k = t; k < t + TTokens.Value; k++)
            {
                sbyte* x = job.Codes + (long)k * job.Cols;
                float* xs = job.XScales + (long)k * job.Groups;
                float sum = 0;
                for (int b = 0; b < job.Blocks; b++)
                {
                    byte* block = row + b * KBlockLayout.Q6KBlockBytes;
                    float d = SuperScale(block);
                    for (int g = 0; g < GroupsPerBlock; g++)
                    {
                        int half = g / 4, quarter = g % 4, shift = 4 * (quarter / 2), dot = 0;
                        byte* low = block + 64 * half + 32 * (quarter % 2), high = block + 128 + 32 * half;
                        sbyte* xg = x + b * KBlockLayout.BlockValues + g * Group;
                        for (int l = 0; l < Group; l++)
                        {
                            int code = ((low[l] >> shift) & 0x0F) | (((high[l] >> (2 * quarter)) & 3) << 4);
                            dot += ((sbyte*)block)[192 + 2 * g + l / 16] * (code - 32) * xg[l];
                        }
                        sum += d * xs[b * GroupsPerBlock + g] * dot;
                    }
                }
                job.Store(r, k, sum);
            }
        }
    }
}
