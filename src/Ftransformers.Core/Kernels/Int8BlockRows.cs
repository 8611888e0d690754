using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// INT8 rows with a scale per block of 32 values (GGUF's Q8_0, kept as stored) against activations quantized per block
/// of 32 as well, as llama.cpp computes Q8_0 (whose activation scales are F16; ours stay F32):
/// y[t * rows + r] = Σ_b scale_rb · xscale_tb · (block b of row r · block b of token t), each block's dot exact in
/// integers. On x86 a tile of two rows (half the range apart, two sequential
/// streams) and up to four tokens runs with the sign trick (|w| as the unsigned operand, x with w's sign, so even a
/// -128 code is exact) into vpdpbusd (AVX-VNNI) or vpmaddubsw + vpmaddwd (AVX2), then each block's eight lanes are
/// scaled into eight float sums; on ARM64 with SDOT the same tile takes two signed dot products a block into four lanes.
/// Other CPUs sum <see cref="Int8Dot"/> block dots. A (row, token) result takes the same operations in the same order
/// whichever tokens share its tile.
/// </summary>
public static class Int8BlockRows
{
    private const int Block = Int8Layout.Q8BlockSize;

    /// <summary>The path <see cref="Rows"/> takes on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        AvxVnni.IsSupported ? KernelPath.AvxVnni : Avx2.IsSupported ? KernelPath.Avx2 : Dp.IsSupported ? KernelPath.Dp : Int8Dot.ActivePath;

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) for every token of <paramref name="x"/> (quantized per block
    /// of 32): y[t * weights.Rows + r] = Σ over blocks of scale · xscale · (codes · codes).
    /// </summary>
    public static void Rows(in Int8Layout weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(ActivePath, weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, in Int8Layout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, rows = weights.Rows, cols = weights.Cols;
        if (weights.BlockSize != Block)
            throw new ArgumentException($"These weights have a scale per {weights.BlockSize} values, not per block of {Block}.", nameof(weights));
        if (x.Cols != cols || x.BlockSize != Block)
            throw new ArgumentException($"Activations must be {cols} values per token in blocks of {Block}, got {x.Cols} in blocks of {x.BlockSize}.", nameof(x));
        if (y.Length < (long)(tokens - 1) * rows + end)
            throw new ArgumentException($"The output needs {tokens} x {rows} values.", nameof(y));
        if ((uint)start > (uint)end || end > rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {rows} rows.");
        if (path is KernelPath.AvxVnni or KernelPath.Avx2 or KernelPath.Dp)
        {
            if (!(path switch { KernelPath.AvxVnni => AvxVnni.IsSupported, KernelPath.Avx2 => Avx2.IsSupported, _ => Dp.IsSupported }))
                throw new PlatformNotSupportedException($"This CPU does not run the {path} path.");
            fixed (sbyte* codes = x.AllValues)
            fixed (float* xScales = x.AllScales)
            fixed (float* ys = y)
            {
                var job = new Job(weights, codes, xScales, ys);
                int half = (end - start) / 2;
                for (int r = start; r < start + half; r++)
                    Tile<Two>(path, job, r, half, tokens);
                for (int r = start + 2 * half; r < end; r++)
                    Tile<One>(path, job, r, 0, tokens);
            }
        }
        else
        {
            int blocks = weights.BlocksPerRow;
            for (int r = start; r < end; r++)
            {
                ReadOnlySpan<sbyte> row = weights.Row(r);
                ReadOnlySpan<float> scales = weights.RowScales(r);
                for (int t = 0; t < tokens; t++)
                {
                    ReadOnlySpan<sbyte> codes = x.Values(t);
                    ReadOnlySpan<float> xScales = x.Scales(t);
                    float sum = 0;
                    for (int b = 0; b < blocks; b++)
                        sum += scales[b] * xScales[b] * Int8Dot.DotOn(path, row.Slice(b * Block, Block), codes.Slice(b * Block, Block));
                    y[t * rows + r] = sum;
                }
            }
        }
        GC.KeepAlive(weights.Owner);
    }

    private readonly unsafe struct Job(in Int8Layout weights, sbyte* codes, float* xScales, float* y)
    {
        public readonly sbyte* Weights = weights.Codes;
        public readonly float* Scales = weights.Scales, XScales = xScales, Y = y;
        public readonly sbyte* Codes = codes;
        public readonly int Rows = weights.Rows, Cols = weights.Cols, Blocks = weights.BlocksPerRow;

        // A pass's operands: rows r and r + step (codes and block scales), and token t's codes and block scales.
        public void Pass(int r, int step, int t, out sbyte* w0, out sbyte* w1, out float* s0, out float* s1, out sbyte* x0, out float* xs0)
        {
            w0 = Weights + (long)r * Cols;
            w1 = Weights + (long)(r + step) * Cols;
            s0 = Scales + (long)r * Blocks;
            s1 = Scales + (long)(r + step) * Blocks;
            x0 = Codes + (long)t * Cols;
            xs0 = XScales + (long)t * Blocks;
        }
    }

    // Rows r and, for two, r + step, for every token: four a pass, then two, then one.
    private static void Tile<TRows>(KernelPath path, Job job, int r, int step, int tokens) where TRows : struct, IPassCount
    {
        if (path == KernelPath.AvxVnni)
            Tile<TRows, X86Passes<VnniByteDot>>(job, r, step, tokens);
        else if (path == KernelPath.Avx2)
            Tile<TRows, X86Passes<Avx2ByteDot>>(job, r, step, tokens);
        else
            Tile<TRows, DpPasses>(job, r, step, tokens);
    }

    private static void Tile<TRows, TPasses>(Job job, int r, int step, int tokens) where TRows : struct, IPassCount where TPasses : struct, IPasses
    {
        int t = 0;
        for (; t + 4 <= tokens; t += 4)
            TPasses.Pass<TRows, Four>(job, r, step, t);
        if (tokens - t >= 2)
        {
            TPasses.Pass<TRows, Two>(job, r, step, t);
            t += 2;
        }
        if (t < tokens)
            TPasses.Pass<TRows, One>(job, r, step, t);
    }

    // One path's pass: rows r and, for two, r + step, against tokens [t, t + TTokens).
    private interface IPasses
    {
        static abstract void Pass<TRows, TTokens>(Job job, int r, int step, int t) where TRows : struct, IPassCount where TTokens : struct, IPassCount;
    }

    private readonly struct X86Passes<TDot> : IPasses where TDot : struct, IByteDot
    {
        public static void Pass<TRows, TTokens>(Job job, int r, int step, int t) where TRows : struct, IPassCount where TTokens : struct, IPassCount =>
            PassX86<TRows, TTokens, TDot>(job, r, step, t);
    }

    private readonly struct DpPasses : IPasses
    {
        public static void Pass<TRows, TTokens>(Job job, int r, int step, int t) where TRows : struct, IPassCount where TTokens : struct, IPassCount =>
            PassDp<TRows, TTokens>(job, r, step, t);
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void PassX86<TRows, TTokens, TDot>(Job job, int r, int step, int t)
        where TRows : struct, IPassCount where TTokens : struct, IPassCount where TDot : struct, IByteDot
    {
        nint cols = job.Cols;
        int blocks = job.Blocks;
        job.Pass(r, step, t, out sbyte* w0, out sbyte* w1, out float* s0, out float* s1, out sbyte* x0, out float* xs0);
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        for (int b = 0; b < blocks; b++)
        {
            nint at = b * Block;
            WeightPrefetch.Ahead(w0 + at);
            if (TRows.Value > 1)
                WeightPrefetch.Ahead(w1 + at);
            Vector256<sbyte> v0 = Vector256.Load(w0 + at), v1 = TRows.Value > 1 ? Vector256.Load(w1 + at) : default;
            Vector256<byte> u0 = Avx2.Sign(v0, v0).AsByte(), u1 = TRows.Value > 1 ? Avx2.Sign(v1, v1).AsByte() : default;
            float ws0 = s0[b], ws1 = TRows.Value > 1 ? s1[b] : 0;
            Step<TRows, TDot>(u0, u1, v0, v1, Vector256.Load(x0 + at), ws0, ws1, xs0[b], ref a00, ref a10);
            if (TTokens.Value > 1)
                Step<TRows, TDot>(u0, u1, v0, v1, Vector256.Load(x0 + cols + at), ws0, ws1, xs0[blocks + b], ref a01, ref a11);
            if (TTokens.Value > 2)
            {
                Step<TRows, TDot>(u0, u1, v0, v1, Vector256.Load(x0 + 2 * cols + at), ws0, ws1, xs0[2 * blocks + b], ref a02, ref a12);
                Step<TRows, TDot>(u0, u1, v0, v1, Vector256.Load(x0 + 3 * cols + at), ws0, ws1, xs0[3 * blocks + b], ref a03, ref a13);
            }
        }
        StoreSums<TTokens>(job, r, t, Vector256.Sum(a00), Vector256.Sum(a01), Vector256.Sum(a02), Vector256.Sum(a03));
        if (TRows.Value > 1)
            StoreSums<TTokens>(job, r + step, t, Vector256.Sum(a10), Vector256.Sum(a11), Vector256.Sum(a12), Vector256.Sum(a13));
    }

    // ARM64 SDOT: a block is two 16-byte halves, signed x signed (no sign trick), four int32 lanes scaled into float sums.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void PassDp<TRows, TTokens>(Job job, int r, int step, int t) where TRows : struct, IPassCount where TTokens : struct, IPassCount
    {
        nint cols = job.Cols;
        int blocks = job.Blocks;
        job.Pass(r, step, t, out sbyte* w0, out sbyte* w1, out float* s0, out float* s1, out sbyte* x0, out float* xs0);
        Vector128<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        for (int b = 0; b < blocks; b++)
        {
            nint at = b * Block;
            Vector128<sbyte> l0 = Vector128.Load(w0 + at), h0 = Vector128.Load(w0 + at + 16);
            Vector128<sbyte> l1 = TRows.Value > 1 ? Vector128.Load(w1 + at) : default, h1 = TRows.Value > 1 ? Vector128.Load(w1 + at + 16) : default;
            float ws0 = s0[b], ws1 = TRows.Value > 1 ? s1[b] : 0;
            StepDp<TRows>(l0, h0, l1, h1, x0 + at, ws0, ws1, xs0[b], ref a00, ref a10);
            if (TTokens.Value > 1)
                StepDp<TRows>(l0, h0, l1, h1, x0 + cols + at, ws0, ws1, xs0[blocks + b], ref a01, ref a11);
            if (TTokens.Value > 2)
            {
                StepDp<TRows>(l0, h0, l1, h1, x0 + 2 * cols + at, ws0, ws1, xs0[2 * blocks + b], ref a02, ref a12);
                StepDp<TRows>(l0, h0, l1, h1, x0 + 3 * cols + at, ws0, ws1, xs0[3 * blocks + b], ref a03, ref a13);
            }
        }
        StoreSums<TTokens>(job, r, t, Vector128.Sum(a00), Vector128.Sum(a01), Vector128.Sum(a02), Vector128.Sum(a03));
        if (TRows.Value > 1)
            StoreSums<TTokens>(job, r + step, t, Vector128.Sum(a10), Vector128.Sum(a11), Vector128.Sum(a12), Vector128.Sum(a13));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StepDp<TRows>(Vector128<sbyte> l0, Vector128<sbyte> h0, Vector128<sbyte> l1, Vector128<sbyte> h1, sbyte* x,
        float ws0, float ws1, float xs, ref Vector128<float> a0, ref Vector128<float> a1) where TRows : struct, IPassCount
    {
        Vector128<sbyte> xl = Vector128.Load(x), xh = Vector128.Load(x + 16);
        a0 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l0, xl), h0, xh)), Vector128.Create(ws0 * xs), a0);
        if (TRows.Value > 1)
            a1 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l1, xl), h1, xh)), Vector128.Create(ws1 * xs), a1);
    }

    // One block of one token against the tile's rows: the exact integer dot in eight lanes, scaled into the float sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<TRows, TDot>(Vector256<byte> u0, Vector256<byte> u1, Vector256<sbyte> v0, Vector256<sbyte> v1, Vector256<sbyte> x,
        float ws0, float ws1, float xs, ref Vector256<float> a0, ref Vector256<float> a1) where TRows : struct, IPassCount where TDot : struct, IByteDot
    {
        a0 = Vector256.FusedMultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(u0, Avx2.Sign(x, v0))), Vector256.Create(ws0 * xs), a0);
        if (TRows.Value > 1)
            a1 = Vector256.FusedMultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(u1, Avx2.Sign(x, v1))), Vector256.Create(ws1 * xs), a1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreSums<TTokens>(Job job, int r, int t, float s0, float s1, float s2, float s3) where TTokens : struct, IPassCount
    {
        job.Y[(long)t * job.Rows + r] = s0;
        if (TTokens.Value > 1)
            job.Y[(long)(t + 1) * job.Rows + r] = s1;
        if (TTokens.Value > 2)
        {
            job.Y[(long)(t + 2) * job.Rows + r] = s2;
            job.Y[(long)(t + 3) * job.Rows + r] = s3;
        }
    }
}
