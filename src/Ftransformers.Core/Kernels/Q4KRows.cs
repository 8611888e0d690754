using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Q4_K rows (<see cref="Q4KLayout"/>, read in place) against activations quantized to INT8 per block of 32:
/// y[t * rows + r] = Σ over sub-blocks j of (d · scale_j) · xscale_tj · (codes_j · x codes_tj) − (dmin · min_j) · xscale_tj · Σ x codes_tj,
/// each sub-block's dot exact in integers (codes 0..15 are the unsigned operand as they are). A block's eight scales
/// and mins are unpacked once per pass with a few byte shuffles, shared by the pass's tokens; each sub-block's eight
/// (x86) or four (ARM64) int32 lanes are scaled into float sums, and the mins enter as one multiply-add per block.
/// Paths: AVX-VNNI (vpdpbusd), AVX2 (vpmaddubsw + vpmaddwd), ARM64 SDOT, portable Vector128 (widening multiplies) and
/// scalar; no 512-bit path (a block's sub-blocks are 32 values, half a 512-bit register). A row is one sequential stream;
/// tokens go four a pass, then two, then one, and a (row, token) result takes the same operations in the same order
/// whichever tokens share its pass.
/// </summary>
public static class Q4KRows
{
    private const int Sub = Q4KLayout.SubBlockValues, SubsPerBlock = Q4KLayout.BlockValues / Sub;

    /// <summary>The path <see cref="Rows"/> takes on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        AvxVnni.IsSupported ? KernelPath.AvxVnni : Avx2.IsSupported ? KernelPath.Avx2 : Dp.IsSupported ? KernelPath.Dp
        : Vector128.IsHardwareAccelerated ? KernelPath.Vector128 : KernelPath.Scalar;

    /// <summary>Rows [<paramref name="start"/>, <paramref name="end"/>) for every token of <paramref name="x"/> (quantized per block of 32).</summary>
    public static void Rows(in Q4KLayout weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(ActivePath, weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, in Q4KLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, rows = weights.Rows, cols = weights.Cols;
        if (x.Cols != cols || x.BlockSize != Sub)
            throw new ArgumentException($"Activations must be {cols} values per token in blocks of {Sub}, got {x.Cols} in blocks of {x.BlockSize}.", nameof(x));
        if (y.Length < (long)(tokens - 1) * rows + end)
            throw new ArgumentException($"The output needs {tokens} x {rows} values.", nameof(y));
        if ((uint)start > (uint)end || end > rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {rows} rows.");
        bool supported = path switch
        {
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
            for (int r = start; r < end; r++)
                switch (path)
                {
                    case KernelPath.AvxVnni: Tile<X86Passes<VnniByteDot>>(job, r, tokens); break;
                    case KernelPath.Avx2: Tile<X86Passes<Avx2ByteDot>>(job, r, tokens); break;
                    case KernelPath.Dp: Tile<Passes128<SdotDot>>(job, r, tokens); break;
                    case KernelPath.Vector128: Tile<Passes128<WideningDot>>(job, r, tokens); break;
                    default: Tile<ScalarPasses>(job, r, tokens); break;
                }
        }
        GC.KeepAlive(weights.Owner);
    }

    private readonly unsafe struct Job(in Q4KLayout weights, sbyte* codes, float* xScales, float* scaledSums, float* y)
    {
        public readonly byte* Weights = weights.Blocks;
        public readonly sbyte* Codes = codes;
        public readonly float* XScales = xScales, ScaledSums = scaledSums, Y = y;
        public readonly long RowBytes = weights.RowBytes;
        public readonly int Rows = weights.Rows, Cols = weights.Cols, Blocks = weights.BlocksPerRow, Subs = weights.Cols / Sub;

        public byte* Row(int r) => Weights + r * RowBytes;

        public void Store(int r, int t, float sum) => Y[(long)t * Rows + r] = sum;
    }

    private static void Tile<TPasses>(Job job, int r, int tokens) where TPasses : struct, IPasses
    {
        int t = 0;
        for (; t + 4 <= tokens; t += 4)
            TPasses.Pass<Four>(job, r, t);
        if (tokens - t >= 2)
        {
            TPasses.Pass<Two>(job, r, t);
            t += 2;
        }
        if (t < tokens)
            TPasses.Pass<One>(job, r, t);
    }

    // One path's pass: row r against tokens [t, t + TTokens).
    private interface IPasses
    {
        static abstract void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount;
    }

    /// <summary>
    /// A block's eight sub-block scales d · scale_j into <paramref name="scales"/> and negated mins −dmin · min_j into
    /// <paramref name="negMins"/>, the 6-bit fields unpacked as llama.cpp's <c>get_scale_min_k4</c> does.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void Scales(byte* block, float* scales, float* negMins)
    {
        float d = (float)Unsafe.ReadUnaligned<Half>(block), dmin = (float)Unsafe.ReadUnaligned<Half>(block + 2);
        // Bytes 4..15 of the block are the twelve packed bytes q (and four code bytes, unused). Sub-blocks 0-3 take
        // q[j] & 63 and q[j + 4] & 63; 4-7 take the nibbles of q[j + 4] with the top two bits of q[j - 4] / q[j] above them.
        Vector128<byte> q = Vector128.Load(block + 4);
        Vector128<byte> low = Vector128.Shuffle(q, Vector128.Create((byte)0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11))
            & Vector128.Create((byte)63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 255, 255, 255, 255);
        low = Vector128.ConditionalSelect(Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255), low >>> 4, low);
        Vector128<byte> top = Vector128.Shuffle(q, Vector128.Create((byte)255, 255, 255, 255, 0, 1, 2, 3, 255, 255, 255, 255, 4, 5, 6, 7));
        Vector128<byte> six = low | ((top >>> 6) << 4); // scale_0..7, then min_0..7
        Vector128<ushort> sc = Vector128.WidenLower(six), mn = Vector128.WidenUpper(six);
        Vector128<float> dv = Vector128.Create(d), mv = Vector128.Create(-dmin);
        (Vector128.ConvertToSingle(Vector128.WidenLower(sc).AsInt32()) * dv).Store(scales);
        (Vector128.ConvertToSingle(Vector128.WidenUpper(sc).AsInt32()) * dv).Store(scales + 4);
        (Vector128.ConvertToSingle(Vector128.WidenLower(mn).AsInt32()) * mv).Store(negMins);
        (Vector128.ConvertToSingle(Vector128.WidenUpper(mn).AsInt32()) * mv).Store(negMins + 4);
    }

    private readonly struct X86Passes<TDot> : IPasses where TDot : struct, IByteDot
    {
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int subs = job.Subs;
            byte* row = job.Row(r);
            sbyte* x0 = job.Codes + (long)t * cols;
            float* xs0 = job.XScales + (long)t * subs, ss0 = job.ScaledSums + (long)t * subs;
            float* scales = stackalloc float[2 * SubsPerBlock];
            float* negMins = scales + SubsPerBlock;
            Vector256<byte> nibble = Vector256.Create((byte)0x0F);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * Q4KLayout.BlockBytes;
                WeightPrefetch.Ahead(block);
                WeightPrefetch.Ahead(block + 64);
                WeightPrefetch.Ahead(block + 128);
                Scales(block, scales, negMins);
                int s0 = b * SubsPerBlock;
                nint at = b * Q4KLayout.BlockValues;
                Vector256<float> mins = Vector256.Load(negMins);
                a0 = Vector256.FusedMultiplyAdd(mins, Vector256.Load(ss0 + s0), a0);
                if (TTokens.Value > 1)
                    a1 = Vector256.FusedMultiplyAdd(mins, Vector256.Load(ss0 + subs + s0), a1);
                if (TTokens.Value > 2)
                {
                    a2 = Vector256.FusedMultiplyAdd(mins, Vector256.Load(ss0 + 2 * subs + s0), a2);
                    a3 = Vector256.FusedMultiplyAdd(mins, Vector256.Load(ss0 + 3 * subs + s0), a3);
                }
                for (int j = 0; j < SubsPerBlock / 2; j++)
                {
                    Vector256<byte> codes = Vector256.Load(block + 16 + 32 * j);
                    Vector256<byte> lo = codes & nibble, hi = Avx2.ShiftRightLogical(codes.AsUInt16(), 4).AsByte() & nibble;
                    float sl = scales[2 * j], sh = scales[2 * j + 1];
                    int s = s0 + 2 * j;
                    nint c = at + 64 * j;
                    Step(lo, hi, x0 + c, sl * xs0[s], sh * xs0[s + 1], ref a0);
                    if (TTokens.Value > 1)
                        Step(lo, hi, x0 + cols + c, sl * xs0[subs + s], sh * xs0[subs + s + 1], ref a1);
                    if (TTokens.Value > 2)
                    {
                        Step(lo, hi, x0 + 2 * cols + c, sl * xs0[2 * subs + s], sh * xs0[2 * subs + s + 1], ref a2);
                        Step(lo, hi, x0 + 3 * cols + c, sl * xs0[3 * subs + s], sh * xs0[3 * subs + s + 1], ref a3);
                    }
                }
            }
            job.Store(r, t, Vector256.Sum(a0));
            if (TTokens.Value > 1)
                job.Store(r, t + 1, Vector256.Sum(a1));
            if (TTokens.Value > 2)
            {
                job.Store(r, t + 2, Vector256.Sum(a2));
                job.Store(r, t + 3, Vector256.Sum(a3));
            }
        }

        // Two sub-blocks (the low and high nibbles of 32 code bytes) against one token's 64 codes at x.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static unsafe void Step(Vector256<byte> lo, Vector256<byte> hi, sbyte* x, float scaleLo, float scaleHi, ref Vector256<float> a)
        {
            a = Vector256.FusedMultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(lo, Vector256.Load(x))), Vector256.Create(scaleLo), a);
            a = Vector256.FusedMultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(hi, Vector256.Load(x + 32))), Vector256.Create(scaleHi), a);
        }
    }

    // 32 codes (two 16-byte halves, 0..15) against 32 x codes at x, in four int32 lanes.
    private interface IDot128
    {
        static abstract unsafe Vector128<int> Dot(Vector128<byte> u0, Vector128<byte> u1, sbyte* x);
    }

    private readonly struct SdotDot : IDot128
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static unsafe Vector128<int> Dot(Vector128<byte> u0, Vector128<byte> u1, sbyte* x) =>
            Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, u0.AsSByte(), Vector128.Load(x)), u1.AsSByte(), Vector128.Load(x + 16));
    }

    // Products in int16 (at most 15 · 128 each, four summed per lane: exact), then widened to int32.
    private readonly struct WideningDot : IDot128
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static unsafe Vector128<int> Dot(Vector128<byte> u0, Vector128<byte> u1, sbyte* x)
        {
            Vector128<sbyte> x0 = Vector128.Load(x), x1 = Vector128.Load(x + 16);
            Vector128<short> p = Vector128.WidenLower(u0).AsInt16() * Vector128.WidenLower(x0) + Vector128.WidenUpper(u0).AsInt16() * Vector128.WidenUpper(x0)
                + Vector128.WidenLower(u1).AsInt16() * Vector128.WidenLower(x1) + Vector128.WidenUpper(u1).AsInt16() * Vector128.WidenUpper(x1);
            return Vector128.WidenLower(p) + Vector128.WidenUpper(p);
        }
    }

    private readonly struct Passes128<TDot> : IPasses where TDot : struct, IDot128
    {
        public static unsafe void Pass<TTokens>(Job job, int r, int t) where TTokens : struct, IPassCount
        {
            nint cols = job.Cols;
            int subs = job.Subs;
            byte* row = job.Row(r);
            sbyte* x0 = job.Codes + (long)t * cols;
            float* xs0 = job.XScales + (long)t * subs, ss0 = job.ScaledSums + (long)t * subs;
            float* scales = stackalloc float[2 * SubsPerBlock];
            float* negMins = scales + SubsPerBlock;
            Vector128<byte> nibble = Vector128.Create((byte)0x0F);
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < job.Blocks; b++)
            {
                byte* block = row + b * Q4KLayout.BlockBytes;
                Scales(block, scales, negMins);
                int s0 = b * SubsPerBlock;
                nint at = b * Q4KLayout.BlockValues;
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
                    Vector128<byte> c0 = Vector128.Load(block + 16 + 32 * j), c1 = Vector128.Load(block + 32 + 32 * j);
                    Vector128<byte> lo0 = c0 & nibble, lo1 = c1 & nibble, hi0 = c0 >>> 4, hi1 = c1 >>> 4;
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
            job.Store(r, t, Vector128.Sum(a0));
            if (TTokens.Value > 1)
                job.Store(r, t + 1, Vector128.Sum(a1));
            if (TTokens.Value > 2)
            {
                job.Store(r, t + 2, Vector128.Sum(a2));
                job.Store(r, t + 3, Vector128.Sum(a3));
            }
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
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(TDot.Dot(lo0, lo1, x)), Vector128.Create(scaleLo), a);
            a = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(TDot.Dot(hi0, hi1, x + 32)), Vector128.Create(scaleHi), a);
        }
    }

    // Any CPU: one token at a time, a sub-block's dot in an int, the same terms summed in a float.
    private readonly struct ScalarPasses : IPasses
    {
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
                    byte* block = row + b * Q4KLayout.BlockBytes;
                    Scales(block, scales, negMins);
                    for (int j = 0; j < SubsPerBlock; j++)
                    {
                        int s = b * SubsPerBlock + j, shift = 4 * (j & 1), dot = 0;
                        byte* codes = block + 16 + 32 * (j / 2);
                        sbyte* xj = x + s * Sub;
                        for (int i = 0; i < Sub; i++)
                            dot += ((codes[i] >> shift) & 0x0F) * xj[i];
                        sum += scales[j] * xs[s] * dot + negMins[j] * ss[s];
                    }
                }
                job.Store(r, k, sum);
            }
        }
    }
}
