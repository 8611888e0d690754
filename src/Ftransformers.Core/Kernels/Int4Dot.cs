using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// One row of grouped INT4 weights against INT8 block-quantized activations of one or more tokens, the inner
/// loop of the routed experts. With codes q (0..15), block dots D_b = Σ q·x_code are taken in integers; then
/// row · x ≈ Σ_b scale_g(b) · xscale_b · D_b + Σ_b min_g(b) · (xscale_b · Σ x_code), where a symmetric
/// format's min is −8 · scale. A block's nibbles are unpacked once for all tokens, so tokens sharing an expert share
/// one read of its weights. Group size 32 has a faster SDOT kernel (<see cref="Int4Group32Dp"/>). On AVX2 the fast kernel
/// needs weights repacked in groups of sixteen rows (<see cref="Int4RowGroupLayout"/>, <see cref="Int4RowGroupsAvx2"/>), as
/// weight matrices do at load; row-major weights given here take the per-row paths below, which also serve the other
/// formats and every path in tests.
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
    public static void RowDot(in Int4Layout weights, int row, Int8Activations x, Span<float> results) =>
        RowDotOn(ActivePath, in weights, row, x, results);

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) of the product for every token of <paramref name="x"/>:
    /// y[t * weights.Rows + r] = row r · token t.
    /// </summary>
    public static void Rows(in Int4Layout weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(ActivePath, in weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, in Int4Layout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (y.Length < (x.Tokens - 1) * weights.Rows + end)
            throw new ArgumentException($"The output needs {x.Tokens} x {weights.Rows} values.", nameof(y));
        if (x.Tokens > MaxTokens)
            throw new ArgumentException($"At most {MaxTokens} tokens per call, got {x.Tokens}.", nameof(x));
        try
        {
            RowsOnPath(path, in weights, start, end, x, y);
        }
        finally
        {
            GC.KeepAlive(weights.Owner);
        }
    }

    private static void RowsOnPath(KernelPath path, in Int4Layout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        // Group size 32 (the default) has an SDOT kernel that applies scales once per four blocks. (On AVX2, weight
        // matrices repack group size 32 into Int4RowGroups for their own kernel.)
        if (path == KernelPath.Dp && weights.GroupSize == Int4Layout.BlockSize && x.Cols == weights.Cols && x.BlockSize == Int4Layout.BlockSize)
        {
            Int4Group32Dp.Rows(in weights, start, end, x, y);
            return;
        }
        Span<float> results = stackalloc float[x.Tokens];
        for (int r = start; r < end; r++)
        {
            RowDotOn(path, in weights, r, x, results);
            for (int t = 0; t < x.Tokens; t++)
                y[t * weights.Rows + r] = results[t];
        }
    }

    internal static void RowDotOn(KernelPath path, in Int4Layout weights, int row, Int8Activations x, Span<float> results)
    {
        if (x.Cols != weights.Cols || x.BlockSize != Int4Layout.BlockSize)
            throw new ArgumentException($"Activations must be {weights.Cols} values per token in blocks of {Int4Layout.BlockSize}, got {x.Cols} in blocks of {x.BlockSize}.");
        if (x.Tokens > MaxTokens || results.Length < x.Tokens)
            throw new ArgumentException($"At most {MaxTokens} tokens per call, with a result per token.");
        ReadOnlySpan<byte> packed = weights.PackedRow(row);
        int groups = weights.GroupsPerRow;
        Span<float> scales = groups <= 1024 ? stackalloc float[groups] : new float[groups];
        Span<float> offsets = groups <= 1024 ? stackalloc float[groups] : new float[groups];
        weights.ScalesAndOffsetsRow(row, scales, offsets);
        int blocksPerGroup = weights.GroupSize / Int4Layout.BlockSize;
        switch (path)
        {
            case KernelPath.Avx2: MainTermAvx2(packed, scales, blocksPerGroup, x, results); break;
            case KernelPath.Dp: MainTermDp(packed, scales, blocksPerGroup, x, results); break;
            case KernelPath.AdvSimd: MainTermAdvSimd(packed, scales, blocksPerGroup, x, results); break;
            case KernelPath.Vector128: MainTermVector128(packed, scales, blocksPerGroup, x, results); break;
            default: MainTermScalar(packed, scales, blocksPerGroup, x, results); break;
        }
        AddOffsetTerm(offsets, blocksPerGroup, x, results);
    }

    // Σ_b offset_g(b) · xscale_b · Σ x_code: the min (or the zero point −8 · scale) times each block's sum.
    private static void AddOffsetTerm(ReadOnlySpan<float> perGroup, int blocksPerGroup, Int8Activations x, Span<float> results)
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
            results[t] += offset;
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

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
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

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
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

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
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

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
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
