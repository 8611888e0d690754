using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Ftransformers.Quantization;

namespace Ftransformers.Kernels;

/// <summary>
/// One row of grouped INT4 weights against INT8 block-quantized activations of one or more tokens, the inner
/// loop of the routed experts. With codes q (0..15), block dots D_b = Σ q·x_code are taken in integers; then
/// row · x ≈ Σ_b scale_g(b) · xscale_b · D_b + Σ_b min_g(b) · (xscale_b · Σ x_code), where a symmetric
/// format's min is −8 · scale. A block's nibbles are unpacked once for all tokens, so a few tokens sharing an
/// expert cost little more than one.
/// </summary>
public static class Int4Dot
{
    /// <summary>Most tokens one call handles (accumulators live on the stack).</summary>
    public const int MaxTokens = 64;

    /// <summary>The path <see cref="RowDot"/> takes on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        Avx2.IsSupported ? KernelPath.Avx2
        : Dp.IsSupported ? KernelPath.Dp
        : AdvSimd.IsSupported ? KernelPath.AdvSimd
        : Vector128.IsHardwareAccelerated ? KernelPath.Vector128
        : KernelPath.Scalar;

    /// <summary>
    /// results[t] = row <paramref name="row"/> of <paramref name="weights"/> · token t of <paramref name="x"/>,
    /// for every token of <paramref name="x"/> (at most <see cref="MaxTokens"/>).
    /// </summary>
    public static void RowDot(Int4Weights weights, int row, Int8Activations x, Span<float> results) =>
        RowDotOn(ActivePath, weights, row, x, results);

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) of the product for every token of <paramref name="x"/>:
    /// y[t * weights.Rows + r] = row r · token t.
    /// </summary>
    public static void Rows(Int4Weights weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(ActivePath, weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, Int4Weights weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (y.Length < (x.Tokens - 1) * weights.Rows + end)
            throw new ArgumentException($"The output needs {x.Tokens} x {weights.Rows} values.", nameof(y));
        if (path == KernelPath.Avx2 && weights.Format.GroupSize == Int4Weights.BlockSize && x.Cols == weights.Cols && x.BlockSize == Int4Weights.BlockSize)
        {
            RowsGroup32Avx2(weights, start, end, x, y);
            return;
        }
        if (path == KernelPath.Dp && weights.Format.GroupSize == Int4Weights.BlockSize && x.Cols == weights.Cols && x.BlockSize == Int4Weights.BlockSize)
        {
            RowsGroup32Dp(weights, start, end, x, y);
            return;
        }
        Span<float> results = stackalloc float[x.Tokens];
        for (int r = start; r < end; r++)
        {
            RowDotOn(path, weights, r, x, results);
            for (int t = 0; t < x.Tokens; t++)
                y[t * weights.Rows + r] = results[t];
        }
    }

    // AVX2 for group size 32, eight blocks per step, tokens two at a time. A 32-byte load holds blocks b and b + 1 of a
    // row: its low nibbles are the first halves of both blocks and its high nibbles the second halves, which meet the
    // activations' paired layout. Horizontal adds reduce the eight blocks' products to one int32 lane per block (in the
    // order 0 2 4 6 1 3 5 7, put right by one permute), so that scales, activation scales and mins are applied as vectors
    // once per eight blocks instead of per block. The int16 sums stay exact: at most 8 products of 15 * 127.
    private static unsafe void RowsGroup32Avx2(Int4Weights weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken, cols = x.Cols, stride = cols / 2, rows = weights.Rows;
        bool symmetric = weights.Format.Symmetric;
        fixed (byte* packed = weights.Packed)
        fixed (float* allScales = weights.Scales, allMins = weights.Mins, ys = y)
        fixed (sbyte* xp = x.AllPairedValues, xv = x.AllValues)
        fixed (float* xs = x.AllScales, xsums = x.AllScaledSums)
        {
            for (int r = start; r < end; r++)
            {
                var row = new Group32Row(packed + (long)r * stride, allScales + (long)r * blocks, symmetric ? null : allMins + (long)r * blocks, blocks);
                for (int t = 0; t < tokens; t += 2)
                {
                    var first = new Group32Token(xp, xv, xs, xsums, cols, blocks, t);
                    if (t + 1 < tokens)
                    {
                        (float a, float b) = TwoTokensGroup32Avx2(row, first, new Group32Token(xp, xv, xs, xsums, cols, blocks, t + 1));
                        ys[(long)t * rows + r] = a;
                        ys[(long)(t + 1) * rows + r] = b;
                    }
                    else
                    {
                        ys[(long)t * rows + r] = OneTokenGroup32Avx2(row, first);
                    }
                }
            }
        }
    }

    // A row's packed weights, scales and mins (null when symmetric).
    private readonly unsafe struct Group32Row(byte* packed, float* scales, float* mins, int blocks)
    {
        public readonly byte* Packed = packed;
        public readonly float* Scales = scales, Mins = mins;
        public readonly int Blocks = blocks;

        public Vector256<float> Min(int b, Vector256<float> scale) => Mins == null ? scale * -8f : Vector256.Load(Mins + b);

        public float Min(int b) => Mins == null ? -8f * Scales[b] : Mins[b];
    }

    // Token t's paired and plain codes, block scales and scaled block sums, within those of all tokens.
    private readonly unsafe struct Group32Token(sbyte* paired, sbyte* codes, float* scales, float* scaledSums, int cols, int blocks, int t)
    {
        public readonly sbyte* Paired = paired + (long)t * cols, Codes = codes + (long)t * cols;
        public readonly float* Scales = scales + (long)t * blocks, ScaledSums = scaledSums + (long)t * blocks;

        // acc + dots * scale * xscale + min * xsum, for eight blocks from b.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> dots, Vector256<float> scale, Vector256<float> min, int b) =>
            Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dots), scale * Vector256.Load(Scales + b), Vector256.FusedMultiplyAdd(min, Vector256.Load(ScaledSums + b), acc));

        // One block of the row's tail (fewer than eight left), in the plain layout.
        public float TailBlock(Group32Row row, int b)
        {
            Vector128<byte> bytes = Vector128.Load(row.Packed + b * 16);
            Vector256<byte> q = Vector256.Create(bytes, Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0xF);
            int dot = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(Codes + b * 32)), Vector256.Create((short)1)));
            return row.Scales[b] * Scales[b] * dot + row.Min(b) * ScaledSums[b];
        }
    }

    // Eight blocks of a row unpacked: block pairs' low nibbles (L) and high nibbles (H).
    private readonly unsafe struct EightBlocks
    {
        private readonly Vector256<byte> _l0, _h0, _l1, _h1, _l2, _h2, _l3, _h3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public EightBlocks(byte* w)
        {
            Vector256<byte> mask = Vector256.Create((byte)0xF);
            Vector256<byte> v0 = Vector256.Load(w), v1 = Vector256.Load(w + 32), v2 = Vector256.Load(w + 64), v3 = Vector256.Load(w + 96);
            (_l0, _h0) = (v0 & mask, Vector256.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & mask);
            (_l1, _h1) = (v1 & mask, Vector256.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & mask);
            (_l2, _h2) = (v2 & mask, Vector256.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & mask);
            (_l3, _h3) = (v3 & mask, Vector256.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & mask);
        }

        // The eight blocks' integer dots with paired codes, one lane per block.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Dots(sbyte* p)
        {
            Vector256<short> p0 = Avx2.MultiplyAddAdjacent(_l0, Vector256.Load(p)) + Avx2.MultiplyAddAdjacent(_h0, Vector256.Load(p + 32));
            Vector256<short> p1 = Avx2.MultiplyAddAdjacent(_l1, Vector256.Load(p + 64)) + Avx2.MultiplyAddAdjacent(_h1, Vector256.Load(p + 96));
            Vector256<short> p2 = Avx2.MultiplyAddAdjacent(_l2, Vector256.Load(p + 128)) + Avx2.MultiplyAddAdjacent(_h2, Vector256.Load(p + 160));
            Vector256<short> p3 = Avx2.MultiplyAddAdjacent(_l3, Vector256.Load(p + 192)) + Avx2.MultiplyAddAdjacent(_h3, Vector256.Load(p + 224));
            // Interleave and add (cheaper than vphaddw): each half of p0 holds 8 partial sums of one block (b in the
            // low half, b + 1 in the high half), of p1 of the blocks two further on, and so on. Two rounds leave two
            // adjacent partials per block, [b b b+2 b+2 b+4 b+4 b+6 b+6 | b+1 b+1 ...], which vpmaddwd adds in int32.
            Vector256<short> p01 = Avx2.UnpackLow(p0.AsInt32(), p1.AsInt32()).AsInt16() + Avx2.UnpackHigh(p0.AsInt32(), p1.AsInt32()).AsInt16();
            Vector256<short> p23 = Avx2.UnpackLow(p2.AsInt32(), p3.AsInt32()).AsInt16() + Avx2.UnpackHigh(p2.AsInt32(), p3.AsInt32()).AsInt16();
            Vector256<short> sums = Avx2.UnpackLow(p01.AsInt64(), p23.AsInt64()).AsInt16() + Avx2.UnpackHigh(p01.AsInt64(), p23.AsInt64()).AsInt16();
            return Avx2.PermuteVar8x32(Avx2.MultiplyAddAdjacent(sums, Vector256.Create((short)1)), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7));
        }
    }

    // One row against one token.
    private static unsafe float OneTokenGroup32Avx2(Group32Row row, Group32Token x)
    {
        int full = row.Blocks & ~7;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int b = 0; b < full; b += 8)
        {
            var blocks = new EightBlocks(row.Packed + b * 16);
            Vector256<float> scale = Vector256.Load(row.Scales + b);
            acc = x.Accumulate(acc, blocks.Dots(x.Paired + b * 32), scale, row.Min(b, scale), b);
        }
        float sum = Vector256.Sum(acc);
        for (int b = full; b < row.Blocks; b++)
            sum += x.TailBlock(row, b);
        return sum;
    }

    // One row against two tokens: the unpacked weights serve both.
    private static unsafe (float, float) TwoTokensGroup32Avx2(Group32Row row, Group32Token x0, Group32Token x1)
    {
        int full = row.Blocks & ~7;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
        for (int b = 0; b < full; b += 8)
        {
            var blocks = new EightBlocks(row.Packed + b * 16);
            Vector256<float> scale = Vector256.Load(row.Scales + b), min = row.Min(b, scale);
            a0 = x0.Accumulate(a0, blocks.Dots(x0.Paired + b * 32), scale, min, b);
            a1 = x1.Accumulate(a1, blocks.Dots(x1.Paired + b * 32), scale, min, b);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1);
        for (int b = full; b < row.Blocks; b++)
        {
            s0 += x0.TailBlock(row, b);
            s1 += x1.TailBlock(row, b);
        }
        return (s0, s1);
    }

    // ARM64 SDOT for group size 32, four blocks per step for every token: two SDOTs per block leave four int32 partial
    // sums; three pairwise adds reduce four blocks to one lane each, in order, so that scales, activation scales and
    // mins are applied as vectors once per four blocks. A block's nibbles are unpacked once for all tokens.
    private static unsafe void RowsGroup32Dp(Int4Weights weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken, cols = x.Cols, stride = cols / 2, rows = weights.Rows, full = blocks & ~3;
        bool symmetric = weights.Format.Symmetric;
        Vector128<byte> mask = Vector128.Create((byte)0xF);
        Span<Vector128<float>> acc = stackalloc Vector128<float>[tokens];
        fixed (byte* packed = weights.Packed)
        fixed (float* allScales = weights.Scales, allMins = weights.Mins, ys = y)
        fixed (sbyte* xv = x.AllValues)
        fixed (float* xs = x.AllScales, xsums = x.AllScaledSums)
        {
            for (int r = start; r < end; r++)
            {
                byte* w = packed + (long)r * stride;
                float* scales = allScales + (long)r * blocks, mins = symmetric ? null : allMins + (long)r * blocks;
                acc.Clear();
                for (int b = 0; b < full; b += 4)
                {
                    Vector128<byte> v0 = Vector128.Load(w + b * 16), v1 = Vector128.Load(w + b * 16 + 16);
                    Vector128<byte> v2 = Vector128.Load(w + b * 16 + 32), v3 = Vector128.Load(w + b * 16 + 48);
                    Vector128<sbyte> l0 = (v0 & mask).AsSByte(), h0 = Vector128.ShiftRightLogical(v0, 4).AsSByte();
                    Vector128<sbyte> l1 = (v1 & mask).AsSByte(), h1 = Vector128.ShiftRightLogical(v1, 4).AsSByte();
                    Vector128<sbyte> l2 = (v2 & mask).AsSByte(), h2 = Vector128.ShiftRightLogical(v2, 4).AsSByte();
                    Vector128<sbyte> l3 = (v3 & mask).AsSByte(), h3 = Vector128.ShiftRightLogical(v3, 4).AsSByte();
                    Vector128<float> scale = Vector128.Load(scales + b);
                    Vector128<float> min = symmetric ? scale * -8f : Vector128.Load(mins + b);
                    for (int t = 0; t < tokens; t++)
                    {
                        sbyte* p = xv + (long)t * cols + b * 32;
                        Vector128<int> d0 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l0, Vector128.Load(p)), h0, Vector128.Load(p + 16));
                        Vector128<int> d1 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l1, Vector128.Load(p + 32)), h1, Vector128.Load(p + 48));
                        Vector128<int> d2 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l2, Vector128.Load(p + 64)), h2, Vector128.Load(p + 80));
                        Vector128<int> d3 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l3, Vector128.Load(p + 96)), h3, Vector128.Load(p + 112));
                        Vector128<int> dots = AdvSimd.Arm64.AddPairwise(AdvSimd.Arm64.AddPairwise(d0, d1), AdvSimd.Arm64.AddPairwise(d2, d3));
                        long at = (long)t * blocks + b;
                        acc[t] = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(dots), scale * Vector128.Load(xs + at),
                            Vector128.FusedMultiplyAdd(min, Vector128.Load(xsums + at), acc[t]));
                    }
                }
                for (int t = 0; t < tokens; t++)
                {
                    float sum = Vector128.Sum(acc[t]);
                    for (int b = full; b < blocks; b++)
                    {
                        Vector128<byte> v = Vector128.Load(w + b * 16);
                        sbyte* p = xv + (long)t * cols + b * 32;
                        int dot = Vector128.Sum(Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, (v & mask).AsSByte(), Vector128.Load(p)), Vector128.ShiftRightLogical(v, 4).AsSByte(), Vector128.Load(p + 16)));
                        long at = (long)t * blocks + b;
                        sum += scales[b] * xs[at] * dot + (symmetric ? -8f * scales[b] : mins[b]) * xsums[at];
                    }
                    ys[(long)t * rows + r] = sum;
                }
            }
        }
    }

    internal static void RowDotOn(KernelPath path, Int4Weights weights, int row, Int8Activations x, Span<float> results)
    {
        if (x.Cols != weights.Cols || x.BlockSize != Int4Weights.BlockSize)
            throw new ArgumentException($"Activations must be {weights.Cols} values per token in blocks of {Int4Weights.BlockSize}, got {x.Cols} in blocks of {x.BlockSize}.");
        if (x.Tokens > MaxTokens || results.Length < x.Tokens)
            throw new ArgumentException($"At most {MaxTokens} tokens per call, with a result per token.");
        ReadOnlySpan<byte> packed = weights.PackedRow(row);
        ReadOnlySpan<float> scales = weights.ScalesRow(row);
        int blocksPerGroup = weights.Format.GroupSize / Int4Weights.BlockSize;
        switch (path)
        {
            case KernelPath.Avx2: MainTermAvx2(packed, scales, blocksPerGroup, x, results); break;
            case KernelPath.Dp: MainTermDp(packed, scales, blocksPerGroup, x, results); break;
            case KernelPath.AdvSimd: MainTermAdvSimd(packed, scales, blocksPerGroup, x, results); break;
            case KernelPath.Vector128: MainTermVector128(packed, scales, blocksPerGroup, x, results); break;
            default: MainTermScalar(packed, scales, blocksPerGroup, x, results); break;
        }
        AddOffsetTerm(weights.Format.Symmetric ? scales : weights.MinsRow(row), weights.Format.Symmetric ? -8f : 1f, blocksPerGroup, x, results);
    }

    // Σ_b offset_g(b) · xscale_b · Σ x_code: the min (or the zero point −8 · scale) times each block's sum.
    private static void AddOffsetTerm(ReadOnlySpan<float> perGroup, float factor, int blocksPerGroup, Int8Activations x, Span<float> results)
    {
        for (int t = 0; t < x.Tokens; t++)
        {
            ReadOnlySpan<float> sums = x.ScaledSums(t);
            float offset;
            if (blocksPerGroup == 1)
            {
                offset = System.Numerics.Tensors.TensorPrimitives.Dot(perGroup, sums);
            }
            else
            {
                offset = 0;
                for (int g = 0; g < perGroup.Length; g++)
                    offset += perGroup[g] * System.Numerics.Tensors.TensorPrimitives.Sum(sums.Slice(g * blocksPerGroup, blocksPerGroup));
            }
            results[t] += factor * offset;
        }
    }

    private static void MainTermScalar(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, int blocksPerGroup, Int8Activations x, Span<float> results)
    {
        for (int t = 0; t < x.Tokens; t++)
        {
            ReadOnlySpan<sbyte> codes = x.Values(t);
            ReadOnlySpan<float> xScales = x.Scales(t);
            float sum = 0;
            for (int b = 0; b < xScales.Length; b++)
            {
                int dot = 0;
                for (int j = 0; j < 16; j++)
                {
                    byte pair = packed[b * 16 + j];
                    dot += (pair & 0xF) * codes[b * 32 + j] + (pair >> 4) * codes[b * 32 + 16 + j];
                }
                sum += scales[b / blocksPerGroup] * xScales[b] * dot;
            }
            results[t] = sum;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<byte> Low, Vector128<byte> High) Unpack(ReadOnlySpan<byte> packed, int block)
    {
        Vector128<byte> bytes = Vector128.LoadUnsafe(ref MemoryMarshal.GetReference(packed), (nuint)(block * 16));
        Vector128<byte> mask = Vector128.Create((byte)0xF);
        return (bytes & mask, Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
    }

    private static void MainTermVector128(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, int blocksPerGroup, Int8Activations x, Span<float> results)
    {
        results[..x.Tokens].Clear();
        int blocks = x.BlocksPerToken;
        for (int b = 0; b < blocks; b++)
        {
            (Vector128<byte> low, Vector128<byte> high) = Unpack(packed, b);
            (Vector128<ushort> q0, Vector128<ushort> q1) = Vector128.Widen(low);
            (Vector128<ushort> q2, Vector128<ushort> q3) = Vector128.Widen(high);
            float scale = scales[b / blocksPerGroup];
            for (int t = 0; t < x.Tokens; t++)
            {
                ref sbyte codes = ref MemoryMarshal.GetReference(x.Values(t));
                (Vector128<short> x0, Vector128<short> x1) = Vector128.Widen(Vector128.LoadUnsafe(ref codes, (nuint)(b * 32)));
                (Vector128<short> x2, Vector128<short> x3) = Vector128.Widen(Vector128.LoadUnsafe(ref codes, (nuint)(b * 32 + 16)));
                // 15 * 127 * 4 terms fits a short; widen once per block.
                Vector128<short> p = q0.AsInt16() * x0 + q1.AsInt16() * x1 + q2.AsInt16() * x2 + q3.AsInt16() * x3;
                (Vector128<int> lo, Vector128<int> hi) = Vector128.Widen(p);
                results[t] += scale * x.Scales(t)[b] * Vector128.Sum(lo + hi);
            }
        }
    }

    private static unsafe void MainTermAvx2(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, int blocksPerGroup, Int8Activations x, Span<float> results)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken, cols = x.Cols;
        int groupShift = blocksPerGroup == 1 ? 0 : 2;
        Vector128<byte> mask = Vector128.Create((byte)0xF);
        Vector256<short> ones = Vector256.Create((short)1);
        fixed (byte* w = packed)
        fixed (float* ws = scales)
        fixed (sbyte* xv = x.AllValues)
        fixed (float* xs = x.AllScales)
        {
            if (tokens == 1)
            {
                // One token (decode): two independent accumulator chains over pairs of blocks.
                Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
                int b = 0;
                for (; b + 2 <= blocks; b += 2)
                {
                    Vector128<byte> bytes0 = Vector128.Load(w + b * 16), bytes1 = Vector128.Load(w + b * 16 + 16);
                    Vector256<byte> q0 = Vector256.Create(bytes0 & mask, Vector128.ShiftRightLogical(bytes0.AsUInt16(), 4).AsByte() & mask);
                    Vector256<byte> q1 = Vector256.Create(bytes1 & mask, Vector128.ShiftRightLogical(bytes1.AsUInt16(), 4).AsByte() & mask);
                    Vector256<int> d0 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q0, Vector256.Load(xv + b * 32)), ones);
                    Vector256<int> d1 = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.Load(xv + b * 32 + 32)), ones);
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(d0), Vector256.Create(ws[b >> groupShift] * xs[b]), acc0);
                    acc1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(d1), Vector256.Create(ws[(b + 1) >> groupShift] * xs[b + 1]), acc1);
                }
                for (; b < blocks; b++)
                {
                    Vector128<byte> bytes = Vector128.Load(w + b * 16);
                    Vector256<byte> q = Vector256.Create(bytes & mask, Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
                    Vector256<int> d = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(xv + b * 32)), ones);
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(d), Vector256.Create(ws[b >> groupShift] * xs[b]), acc0);
                }
                results[0] = Vector256.Sum(acc0 + acc1);
                return;
            }

            // Several tokens share each unpacked block, four at a time in registers.
            Vector256<ulong> nibbleShift = Vector256.Create(0UL, 0UL, 4UL, 4UL);
            Vector256<byte> mask256 = Vector256.Create((byte)0xF);
            for (int t0 = 0; t0 < tokens; t0 += 4)
            {
                int n = Math.Min(4, tokens - t0);
                sbyte* x0 = xv + (long)t0 * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
                float* c0 = xs + (long)t0 * blocks, c1 = c0 + blocks, c2 = c1 + blocks, c3 = c2 + blocks;
                Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
                for (int b = 0; b < blocks; b++)
                {
                    Vector256<byte> q = Avx2.ShiftRightLogicalVariable(Vector256.Create(Vector128.Load(w + b * 16)).AsUInt64(), nibbleShift).AsByte() & mask256;
                    float scale = ws[b >> groupShift];
                    a0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x0 + b * 32)), ones)), Vector256.Create(scale * c0[b]), a0);
                    if (n > 1)
                        a1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x1 + b * 32)), ones)), Vector256.Create(scale * c1[b]), a1);
                    if (n > 2)
                        a2 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x2 + b * 32)), ones)), Vector256.Create(scale * c2[b]), a2);
                    if (n > 3)
                        a3 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(x3 + b * 32)), ones)), Vector256.Create(scale * c3[b]), a3);
                }
                results[t0] = Vector256.Sum(a0);
                if (n > 1) results[t0 + 1] = Vector256.Sum(a1);
                if (n > 2) results[t0 + 2] = Vector256.Sum(a2);
                if (n > 3) results[t0 + 3] = Vector256.Sum(a3);
            }
        }
    }

    private static void MainTermDp(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, int blocksPerGroup, Int8Activations x, Span<float> results)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken;
        Span<Vector128<float>> acc = stackalloc Vector128<float>[tokens];
        acc.Clear();
        for (int b = 0; b < blocks; b++)
        {
            (Vector128<byte> low, Vector128<byte> high) = Unpack(packed, b);
            float scale = scales[b / blocksPerGroup];
            for (int t = 0; t < tokens; t++)
            {
                ref sbyte codes = ref MemoryMarshal.GetReference(x.Values(t));
                Vector128<int> dot = Dp.DotProduct(Vector128<int>.Zero, low.AsSByte(), Vector128.LoadUnsafe(ref codes, (nuint)(b * 32)));
                dot = Dp.DotProduct(dot, high.AsSByte(), Vector128.LoadUnsafe(ref codes, (nuint)(b * 32 + 16)));
                acc[t] = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(dot), Vector128.Create(scale * x.Scales(t)[b]), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++)
            results[t] = Vector128.Sum(acc[t]);
    }

    private static void MainTermAdvSimd(ReadOnlySpan<byte> packed, ReadOnlySpan<float> scales, int blocksPerGroup, Int8Activations x, Span<float> results)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken;
        Span<Vector128<float>> acc = stackalloc Vector128<float>[tokens];
        acc.Clear();
        for (int b = 0; b < blocks; b++)
        {
            (Vector128<byte> low, Vector128<byte> high) = Unpack(packed, b);
            Vector128<sbyte> q0 = low.AsSByte(), q1 = high.AsSByte();
            float scale = scales[b / blocksPerGroup];
            for (int t = 0; t < tokens; t++)
            {
                ref sbyte codes = ref MemoryMarshal.GetReference(x.Values(t));
                Vector128<sbyte> x0 = Vector128.LoadUnsafe(ref codes, (nuint)(b * 32)), x1 = Vector128.LoadUnsafe(ref codes, (nuint)(b * 32 + 16));
                Vector128<short> p = AdvSimd.MultiplyWideningLower(q0.GetLower(), x0.GetLower());
                p = AdvSimd.MultiplyWideningLowerAndAdd(p, q1.GetLower(), x1.GetLower());
                Vector128<short> r = AdvSimd.MultiplyWideningUpper(q0, x0);
                r = AdvSimd.MultiplyWideningUpperAndAdd(r, q1, x1);
                Vector128<int> dot = AdvSimd.AddPairwiseWideningAndAdd(AdvSimd.AddPairwiseWidening(p), r);
                acc[t] = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(dot), Vector128.Create(scale * x.Scales(t)[b]), acc[t]);
            }
        }
        for (int t = 0; t < tokens; t++)
            results[t] = Vector128.Sum(acc[t]);
    }
}
