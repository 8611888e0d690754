using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// W8A8 rows for many tokens with AVX-VNNI (vpdpbusd: 32 u8 × s8 products summed into eight int32 lanes per
/// instruction), on the row-major <see cref="Int8Layout"/>. vpdpbusd needs one unsigned operand: each weight byte is
/// flipped to w + 128 (one xor per load, shared by the tile's tokens), and the offset is taken back exactly at the end,
/// dot = Σ (w + 128) · x − 128 · Σ x, with Σ x from the activations' quantization. A tile of two rows and four tokens
/// (rows half the range apart) keeps eight accumulators, two weight vectors and one activation vector in the sixteen
/// registers VEX encodes, and each 32-byte step issues eight vpdpbusd for two weight loads, two xors and four
/// activation loads (the AVX2 path needs four instructions per token and step: sign, vpmaddubsw, vpmaddwd, add). Integer dots are exact and the float
/// scaling is the other paths', so results have their bits.
/// </summary>
internal static class Int8RowsAvxVnni
{
    private const int TileRows = 2;

    // 64 tokens of 7168 codes: 448 KB.
    private const int TokensPerBlock = 64;

    /// <summary>Whether this CPU runs the kernel.</summary>
    public static bool IsSupported => AvxVnni.IsSupported;

    /// <summary>
    /// y[t * weights.Rows + r] = scale_r · xscale_t · (row r · codes of token t) for rows [start, end) and every token;
    /// operands already checked by <see cref="Int8Dot.Rows"/>.
    /// </summary>
    public static unsafe void Rows(in Int8Layout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException("The VNNI INT8 kernel needs AVX-VNNI.");
        fixed (sbyte* codes = x.AllValues)
        fixed (float* xScales = x.AllScales)
        fixed (int* xSums = x.AllCodeSums)
        fixed (float* ys = y)
        {
            var job = new Job(weights, codes, xScales, xSums, ys, x.Tokens);
            // Tokens in blocks whose codes stay in L2 while every row of the range passes over them.
            // A tile's two rows are half the range apart: two streams each read front to back, which the hardware
            // prefetchers follow at full bandwidth (neighbouring rows break both streams at every row).
            int half = (end - start) / TileRows;
            for (int t0 = 0; t0 < x.Tokens; t0 += TokensPerBlock)
            {
                int t1 = Math.Min(x.Tokens, t0 + TokensPerBlock);
                for (int r = start; r < start + half; r++)
                    Tile<Two>(job, r, half, t0, t1);
                for (int r = start + TileRows * half; r < end; r++)
                    Tile<One>(job, r, 0, t0, t1);
            }
        }
        GC.KeepAlive(weights.Owner); // the job holds raw pointers into its memory
    }

    private readonly unsafe struct Job(in Int8Layout weights, sbyte* codes, float* xScales, int* xSums, float* y, int tokens)
    {
        public readonly sbyte* Weights = weights.Codes;
        public readonly float* Scales = weights.Scales;
        public readonly sbyte* Codes = codes;
        public readonly float* XScales = xScales, Y = y;
        public readonly int* XSums = xSums;
        public readonly int Rows = weights.Rows, Cols = weights.Cols, Tokens = tokens;
    }

    // Rows r and, for two, r + step for tokens [t, end): four tokens a pass, then two, then one.
    private static unsafe void Tile<TRows>(Job job, int r, int step, int t, int end) where TRows : struct, IPassCount
    {
        for (; t + 4 <= end; t += 4)
            Pass<TRows, Four>(job, r, step, t);
        if (end - t >= 2)
        {
            Pass<TRows, Two>(job, r, step, t);
            t += 2;
        }
        if (t < end)
            Pass<TRows, One>(job, r, step, t);
    }

    // Rows r and, for two, r + step against tokens [t, t + TTokens).
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void Pass<TRows, TTokens>(Job job, int r, int step, int t) where TRows : struct, IPassCount where TTokens : struct, IPassCount
    {
        nint cols = job.Cols;
        sbyte* w0 = job.Weights + r * cols, w1 = w0 + step * cols;
        sbyte* x0 = job.Codes + t * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        Vector256<byte> flip = Vector256.Create((byte)0x80);
        Vector256<int> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        nint i = 0;
        // 64 bytes a round, so that the prefetch needs no branch (a branch in the loop made the JIT keep half the
        // accumulators on the stack).
        for (; i + 64 <= cols; i += 64)
        {
            WeightPrefetch.Ahead(w0 + i);
            if (TRows.Value > 1)
                WeightPrefetch.Ahead(w1 + i);
            Round<TRows, TTokens>(w0 + i, w1 + i, x0 + i, x1 + i, x2 + i, x3 + i, flip, ref a00, ref a01, ref a02, ref a03, ref a10, ref a11, ref a12, ref a13);
            Round<TRows, TTokens>(w0 + i + 32, w1 + i + 32, x0 + i + 32, x1 + i + 32, x2 + i + 32, x3 + i + 32, flip, ref a00, ref a01, ref a02, ref a03, ref a10, ref a11, ref a12, ref a13);
        }
        if (i + 32 <= cols)
        {
            Round<TRows, TTokens>(w0 + i, w1 + i, x0 + i, x1 + i, x2 + i, x3 + i, flip, ref a00, ref a01, ref a02, ref a03, ref a10, ref a11, ref a12, ref a13);
            i += 32;
        }
        Store<TTokens>(job, r, t, i, w0, a00, a01, a02, a03);
        if (TRows.Value > 1)
            Store<TTokens>(job, r + step, t, i, w1, a10, a11, a12, a13);
    }

    // 32 columns of the tile's rows against its tokens.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Round<TRows, TTokens>(sbyte* w0, sbyte* w1, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Vector256<byte> flip,
        ref Vector256<int> a00, ref Vector256<int> a01, ref Vector256<int> a02, ref Vector256<int> a03,
        ref Vector256<int> a10, ref Vector256<int> a11, ref Vector256<int> a12, ref Vector256<int> a13) where TRows : struct, IPassCount where TTokens : struct, IPassCount
    {
        Vector256<byte> u0 = Vector256.Load((byte*)w0) ^ flip;
        Vector256<byte> u1 = TRows.Value > 1 ? Vector256.Load((byte*)w1) ^ flip : default;
        Step<TRows>(u0, u1, Vector256.Load(x0), ref a00, ref a10);
        if (TTokens.Value > 1)
            Step<TRows>(u0, u1, Vector256.Load(x1), ref a01, ref a11);
        if (TTokens.Value > 2)
        {
            Step<TRows>(u0, u1, Vector256.Load(x2), ref a02, ref a12);
            Step<TRows>(u0, u1, Vector256.Load(x3), ref a03, ref a13);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step<TRows>(Vector256<byte> u0, Vector256<byte> u1, Vector256<sbyte> x, ref Vector256<int> a0, ref Vector256<int> a1) where TRows : struct, IPassCount
    {
        a0 = AvxVnni.MultiplyWideningAndAdd(a0, u0, x);
        if (TRows.Value > 1)
            a1 = AvxVnni.MultiplyWideningAndAdd(a1, u1, x);
    }

    // Row r's results for tokens [t, t + TTokens): the lanes summed, the columns from tail on added, the offset taken back.
    // Inlined, so that no accumulator lives across a call.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store<TTokens>(Job job, int r, int t, nint tail, sbyte* row, Vector256<int> a0, Vector256<int> a1, Vector256<int> a2, Vector256<int> a3)
        where TTokens : struct, IPassCount
    {
        float scale = job.Scales[r];
        for (int k = 0; k < TTokens.Value; k++)
        {
            Vector256<int> lanes = k switch { 0 => a0, 1 => a1, 2 => a2, _ => a3 };
            sbyte* codes = job.Codes + (long)(t + k) * job.Cols;
            int offsetDot = Vector256.Sum(lanes);
            for (nint c = tail; c < job.Cols; c++)
                offsetDot += (row[c] + 128) * codes[c];
            int dot = offsetDot - 128 * job.XSums[t + k];
            job.Y[(long)(t + k) * job.Rows + r] = scale * job.XScales[t + k] * dot;
        }
    }
}
