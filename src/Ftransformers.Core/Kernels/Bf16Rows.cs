using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Ftransformers.Kernels;

/// <summary>
/// BF16 weight rows times the F32 inputs of several tokens (y = W x for each token), in tiles of 4 rows x 4 tokens
/// whose 16 sums stay in registers: each weight load serves four tokens and each input load four rows, so a
/// prefill runs near the F32 multiply-add peak instead of re-widening every row for every token. A vector of BF16
/// pairs widens without shuffles (the even-indexed values: shift left 16; the odd ones: mask the low half), so the
/// inputs are first <see cref="Pair">paired</see> to match: within each block of two vectors' worth of values, the
/// even-indexed ones, then the odd ones. Columns after the last whole block stay in order and are summed one by one.
/// Each (row, token) sum is computed in the same order whichever tokens share its tile, so a token's result does not
/// depend on its batch.
/// </summary>
public static unsafe class Bf16Rows
{
    /// <summary>The widest vector path on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        Vector512.IsHardwareAccelerated ? KernelPath.Avx512
        : Vector256.IsHardwareAccelerated ? KernelPath.Avx2
        : Vector128.IsHardwareAccelerated ? KernelPath.Vector128
        : KernelPath.Scalar;

    /// <summary>Whether this CPU runs <paramref name="path"/> (one of Avx512, Avx2, Vector128, Scalar).</summary>
    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Avx512 => Vector512.IsHardwareAccelerated,
        KernelPath.Avx2 => Vector256.IsHardwareAccelerated,
        KernelPath.Vector128 => Vector128.IsHardwareAccelerated,
        KernelPath.Scalar => true,
        _ => false,
    };

    /// <summary>Values per paired block on <paramref name="path"/> (two vectors of F32); 0 for the scalar path, which pairs nothing.</summary>
    public static int PairBlock(KernelPath path) => path switch
    {
        KernelPath.Avx512 => 2 * Vector512<float>.Count,
        KernelPath.Avx2 => 2 * Vector256<float>.Count,
        KernelPath.Vector128 => 2 * Vector128<float>.Count,
        KernelPath.Scalar => 0,
        _ => throw new ArgumentOutOfRangeException(nameof(path), path, "BF16 rows run on the Avx512, Avx2, Vector128 and Scalar paths."),
    };

    /// <summary>
    /// Tokens per pass over a matrix of <paramref name="cols"/> columns: as many as keep their paired inputs within
    /// about half a megabyte (a core's L2), at least 4 and at most 64, so the inputs stay cached while the rows stream.
    /// </summary>
    public static int TokensPerPass(int cols) => Math.Clamp((512 << 10) / (Math.Max(1, cols) * sizeof(float)) / 4 * 4, 4, 64);

    /// <summary>
    /// Writes each row of <paramref name="cols"/> values of <paramref name="x"/> in paired order for the active path.
    /// <paramref name="paired"/> may be <paramref name="x"/> itself (pairing in place).
    /// </summary>
    public static void Pair(ReadOnlySpan<float> x, int cols, Span<float> paired) => PairOn(ActivePath, x, cols, paired);

    internal static void PairOn(KernelPath path, ReadOnlySpan<float> x, int cols, Span<float> paired)
    {
        if (cols <= 0 || x.Length % cols != 0)
            throw new ArgumentException($"{x.Length} inputs are not whole rows of {cols} values.", nameof(x));
        if (paired.Length < x.Length)
            throw new ArgumentException($"The paired inputs need {x.Length} values, got {paired.Length}.", nameof(paired));
        int block = PairBlock(path);
        if (block == 0)
        {
            x.CopyTo(paired);
            return;
        }
        int half = block / 2;
        Span<float> values = stackalloc float[block];
        for (int row = 0; row < x.Length; row += cols)
        {
            int c = 0;
            for (; c + block <= cols; c += block)
            {
                x.Slice(row + c, block).CopyTo(values);
                Span<float> target = paired.Slice(row + c, block);
                for (int j = 0; j < half; j++)
                {
                    target[j] = values[2 * j];
                    target[half + j] = values[2 * j + 1];
                }
            }
            x.Slice(row + c, cols - c).CopyTo(paired.Slice(row + c, cols - c));
        }
    }

    /// <summary>
    /// y[t * <paramref name="yStride"/> + r] = row r of <paramref name="weights"/> · token t of the inputs, for every row
    /// (<paramref name="weights"/> holds whole rows of <paramref name="cols"/> values) and each of
    /// <paramref name="tokens"/> tokens of <paramref name="paired"/> (from <see cref="Pair"/>).
    /// </summary>
    public static void Multiply(ReadOnlySpan<ushort> weights, int cols, ReadOnlySpan<float> paired, int tokens, Span<float> y, int yStride) =>
        MultiplyOn(ActivePath, weights, cols, paired, tokens, y, yStride);

    internal static void MultiplyOn(KernelPath path, ReadOnlySpan<ushort> weights, int cols, ReadOnlySpan<float> paired, int tokens, Span<float> y, int yStride)
    {
        if (cols <= 0 || weights.Length % cols != 0)
            throw new ArgumentException($"{weights.Length} weights are not whole rows of {cols} values.", nameof(weights));
        int rows = weights.Length / cols;
        if (tokens < 0 || paired.Length < (long)tokens * cols)
            throw new ArgumentException($"{tokens} tokens of {cols} values need {(long)tokens * cols} inputs, got {paired.Length}.", nameof(paired));
        if (tokens > 0 && (yStride < rows || y.Length < (long)(tokens - 1) * yStride + rows))
            throw new ArgumentException($"{tokens} tokens of {rows} outputs {yStride} apart need {(long)(tokens - 1) * yStride + rows} values, got {y.Length}.", nameof(y));
        int block = PairBlock(path);
        nint vectorCols = block == 0 ? 0 : cols / block * block;
        fixed (ushort* pw = weights)
        fixed (float* px = paired, py = y)
        {
            // A tile's four rows are four streams a quarter of the rows apart, each read front to back: the hardware
            // prefetchers follow such streams at full bandwidth, while four neighbouring rows (a stream breaking every
            // row) read at about 60 % of it (one token on the Zen5 dev machine). The last rows % 4 rows form one tile.
            int quarter = rows / 4;
            for (int i = 0; i < quarter || (i == quarter && rows % 4 != 0); i++)
            {
                bool last = i == quarter;
                int rowCount = last ? rows % 4 : 4, first = last ? 4 * quarter : i, step = last ? 1 : quarter;
                // A tile's missing rows or tokens repeat its last real one; their sums are not stored.
                ushort* w0 = pw + (long)first * cols;
                ushort* w1 = rowCount > 1 ? w0 + (long)step * cols : w0, w2 = rowCount > 2 ? w1 + (long)step * cols : w1, w3 = rowCount > 3 ? w2 + (long)step * cols : w2;
                for (int t = 0; t < tokens; t += 4)
                {
                    int tokenCount = Math.Min(4, tokens - t);
                    float* x0 = px + (long)t * cols;
                    float* x1 = tokenCount > 1 ? x0 + cols : x0, x2 = tokenCount > 2 ? x1 + cols : x1, x3 = tokenCount > 3 ? x2 + cols : x2;
                    Sums sums = default;
                    if (vectorCols > 0)
                        Tile(path, tokenCount, w0, w1, w2, w3, x0, x1, x2, x3, vectorCols, ref sums);
                    for (int j = 0; j < rowCount; j++)
                    {
                        int row = first + j * step;
                        ushort* w = pw + (long)row * cols;
                        for (int k = 0; k < tokenCount; k++)
                        {
                            float* x = x0 + (long)k * cols;
                            float sum = sums[4 * j + k];
                            for (nint c = vectorCols; c < cols; c++)
                                sum = MathF.FusedMultiplyAdd(BFloat16.ToSingle(w[c]), x[c], sum);
                            py[(long)(t + k) * yStride + row] = sum;
                        }
                    }
                }
            }
        }
    }

    // Sums of a tile: row i, token k at 4 i + k.
    [InlineArray(16)]
    private struct Sums
    {
        private float _first;
    }

    private static void Tile(KernelPath path, int tokenCount, ushort* w0, ushort* w1, ushort* w2, ushort* w3,
        float* x0, float* x1, float* x2, float* x3, nint n, ref Sums sums)
    {
        bool one = tokenCount == 1;
        switch (path)
        {
            case KernelPath.Avx512 when one: Tile4x1Vector512(w0, w1, w2, w3, x0, n, ref sums); break;
            case KernelPath.Avx512: Tile4x4Vector512(w0, w1, w2, w3, x0, x1, x2, x3, n, ref sums); break;
            case KernelPath.Avx2 when one: Tile4x1Vector256(w0, w1, w2, w3, x0, n, ref sums); break;
            case KernelPath.Avx2: Tile4x4Vector256(w0, w1, w2, w3, x0, x1, x2, x3, n, ref sums); break;
            case KernelPath.Vector128 when one: Tile4x1Vector128(w0, w1, w2, w3, x0, n, ref sums); break;
            default: Tile4x4Vector128(w0, w1, w2, w3, x0, x1, x2, x3, n, ref sums); break;
        }
    }

    // Each sum takes its even half, then its odd half, into one accumulator: the 4 x 1 tiles keep that order, so a
    // token's bits do not depend on how many tokens share its tile.

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static void Tile4x4Vector512(ushort* w0, ushort* w1, ushort* w2, ushort* w3, float* x0, float* x1, float* x2, float* x3, nint n, ref Sums sums)
    {
        const int half = 16;
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        for (nint c = 0; c < n; c += 2 * half)
        {
            Vector512<uint> r0 = Vector512.Load((uint*)(w0 + c)), r1 = Vector512.Load((uint*)(w1 + c));
            Vector512<uint> r2 = Vector512.Load((uint*)(w2 + c)), r3 = Vector512.Load((uint*)(w3 + c));
            Vector512<float> e0 = (r0 << 16).AsSingle(), e1 = (r1 << 16).AsSingle(), e2 = (r2 << 16).AsSingle(), e3 = (r3 << 16).AsSingle();
            Vector512<float> o0 = (r0 & high).AsSingle(), o1 = (r1 & high).AsSingle(), o2 = (r2 & high).AsSingle(), o3 = (r3 & high).AsSingle();
            Vector512<float> xe = Vector512.Load(x0 + c), xo = Vector512.Load(x0 + c + half);
            s00 = Vector512.FusedMultiplyAdd(o0, xo, Vector512.FusedMultiplyAdd(e0, xe, s00));
            s10 = Vector512.FusedMultiplyAdd(o1, xo, Vector512.FusedMultiplyAdd(e1, xe, s10));
            s20 = Vector512.FusedMultiplyAdd(o2, xo, Vector512.FusedMultiplyAdd(e2, xe, s20));
            s30 = Vector512.FusedMultiplyAdd(o3, xo, Vector512.FusedMultiplyAdd(e3, xe, s30));
            xe = Vector512.Load(x1 + c); xo = Vector512.Load(x1 + c + half);
            s01 = Vector512.FusedMultiplyAdd(o0, xo, Vector512.FusedMultiplyAdd(e0, xe, s01));
            s11 = Vector512.FusedMultiplyAdd(o1, xo, Vector512.FusedMultiplyAdd(e1, xe, s11));
            s21 = Vector512.FusedMultiplyAdd(o2, xo, Vector512.FusedMultiplyAdd(e2, xe, s21));
            s31 = Vector512.FusedMultiplyAdd(o3, xo, Vector512.FusedMultiplyAdd(e3, xe, s31));
            xe = Vector512.Load(x2 + c); xo = Vector512.Load(x2 + c + half);
            s02 = Vector512.FusedMultiplyAdd(o0, xo, Vector512.FusedMultiplyAdd(e0, xe, s02));
            s12 = Vector512.FusedMultiplyAdd(o1, xo, Vector512.FusedMultiplyAdd(e1, xe, s12));
            s22 = Vector512.FusedMultiplyAdd(o2, xo, Vector512.FusedMultiplyAdd(e2, xe, s22));
            s32 = Vector512.FusedMultiplyAdd(o3, xo, Vector512.FusedMultiplyAdd(e3, xe, s32));
            xe = Vector512.Load(x3 + c); xo = Vector512.Load(x3 + c + half);
            s03 = Vector512.FusedMultiplyAdd(o0, xo, Vector512.FusedMultiplyAdd(e0, xe, s03));
            s13 = Vector512.FusedMultiplyAdd(o1, xo, Vector512.FusedMultiplyAdd(e1, xe, s13));
            s23 = Vector512.FusedMultiplyAdd(o2, xo, Vector512.FusedMultiplyAdd(e2, xe, s23));
            s33 = Vector512.FusedMultiplyAdd(o3, xo, Vector512.FusedMultiplyAdd(e3, xe, s33));
        }
        (sums[0], sums[1], sums[2], sums[3]) = (Vector512.Sum(s00), Vector512.Sum(s01), Vector512.Sum(s02), Vector512.Sum(s03));
        (sums[4], sums[5], sums[6], sums[7]) = (Vector512.Sum(s10), Vector512.Sum(s11), Vector512.Sum(s12), Vector512.Sum(s13));
        (sums[8], sums[9], sums[10], sums[11]) = (Vector512.Sum(s20), Vector512.Sum(s21), Vector512.Sum(s22), Vector512.Sum(s23));
        (sums[12], sums[13], sums[14], sums[15]) = (Vector512.Sum(s30), Vector512.Sum(s31), Vector512.Sum(s32), Vector512.Sum(s33));
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static void Tile4x1Vector512(ushort* w0, ushort* w1, ushort* w2, ushort* w3, float* x0, nint n, ref Sums sums)
    {
        const int half = 16;
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (nint c = 0; c < n; c += 2 * half)
        {
            Vector512<uint> r0 = Vector512.Load((uint*)(w0 + c)), r1 = Vector512.Load((uint*)(w1 + c));
            Vector512<uint> r2 = Vector512.Load((uint*)(w2 + c)), r3 = Vector512.Load((uint*)(w3 + c));
            Vector512<float> xe = Vector512.Load(x0 + c), xo = Vector512.Load(x0 + c + half);
            s0 = Vector512.FusedMultiplyAdd((r0 & high).AsSingle(), xo, Vector512.FusedMultiplyAdd((r0 << 16).AsSingle(), xe, s0));
            s1 = Vector512.FusedMultiplyAdd((r1 & high).AsSingle(), xo, Vector512.FusedMultiplyAdd((r1 << 16).AsSingle(), xe, s1));
            s2 = Vector512.FusedMultiplyAdd((r2 & high).AsSingle(), xo, Vector512.FusedMultiplyAdd((r2 << 16).AsSingle(), xe, s2));
            s3 = Vector512.FusedMultiplyAdd((r3 & high).AsSingle(), xo, Vector512.FusedMultiplyAdd((r3 << 16).AsSingle(), xe, s3));
        }
        (sums[0], sums[4], sums[8], sums[12]) = (Vector512.Sum(s0), Vector512.Sum(s1), Vector512.Sum(s2), Vector512.Sum(s3));
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static void Tile4x4Vector256(ushort* w0, ushort* w1, ushort* w2, ushort* w3, float* x0, float* x1, float* x2, float* x3, nint n, ref Sums sums)
    {
        const int half = 8;
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        Vector256<float> s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        for (nint c = 0; c < n; c += 2 * half)
        {
            Vector256<uint> r0 = Vector256.Load((uint*)(w0 + c)), r1 = Vector256.Load((uint*)(w1 + c));
            Vector256<uint> r2 = Vector256.Load((uint*)(w2 + c)), r3 = Vector256.Load((uint*)(w3 + c));
            Vector256<float> e0 = (r0 << 16).AsSingle(), e1 = (r1 << 16).AsSingle(), e2 = (r2 << 16).AsSingle(), e3 = (r3 << 16).AsSingle();
            Vector256<float> o0 = (r0 & high).AsSingle(), o1 = (r1 & high).AsSingle(), o2 = (r2 & high).AsSingle(), o3 = (r3 & high).AsSingle();
            Vector256<float> xe = Vector256.Load(x0 + c), xo = Vector256.Load(x0 + c + half);
            s00 = Vector256.FusedMultiplyAdd(o0, xo, Vector256.FusedMultiplyAdd(e0, xe, s00));
            s10 = Vector256.FusedMultiplyAdd(o1, xo, Vector256.FusedMultiplyAdd(e1, xe, s10));
            s20 = Vector256.FusedMultiplyAdd(o2, xo, Vector256.FusedMultiplyAdd(e2, xe, s20));
            s30 = Vector256.FusedMultiplyAdd(o3, xo, Vector256.FusedMultiplyAdd(e3, xe, s30));
            xe = Vector256.Load(x1 + c); xo = Vector256.Load(x1 + c + half);
            s01 = Vector256.FusedMultiplyAdd(o0, xo, Vector256.FusedMultiplyAdd(e0, xe, s01));
            s11 = Vector256.FusedMultiplyAdd(o1, xo, Vector256.FusedMultiplyAdd(e1, xe, s11));
            s21 = Vector256.FusedMultiplyAdd(o2, xo, Vector256.FusedMultiplyAdd(e2, xe, s21));
            s31 = Vector256.FusedMultiplyAdd(o3, xo, Vector256.FusedMultiplyAdd(e3, xe, s31));
            xe = Vector256.Load(x2 + c); xo = Vector256.Load(x2 + c + half);
            s02 = Vector256.FusedMultiplyAdd(o0, xo, Vector256.FusedMultiplyAdd(e0, xe, s02));
            s12 = Vector256.FusedMultiplyAdd(o1, xo, Vector256.FusedMultiplyAdd(e1, xe, s12));
            s22 = Vector256.FusedMultiplyAdd(o2, xo, Vector256.FusedMultiplyAdd(e2, xe, s22));
            s32 = Vector256.FusedMultiplyAdd(o3, xo, Vector256.FusedMultiplyAdd(e3, xe, s32));
            xe = Vector256.Load(x3 + c); xo = Vector256.Load(x3 + c + half);
            s03 = Vector256.FusedMultiplyAdd(o0, xo, Vector256.FusedMultiplyAdd(e0, xe, s03));
            s13 = Vector256.FusedMultiplyAdd(o1, xo, Vector256.FusedMultiplyAdd(e1, xe, s13));
            s23 = Vector256.FusedMultiplyAdd(o2, xo, Vector256.FusedMultiplyAdd(e2, xe, s23));
            s33 = Vector256.FusedMultiplyAdd(o3, xo, Vector256.FusedMultiplyAdd(e3, xe, s33));
        }
        (sums[0], sums[1], sums[2], sums[3]) = (Vector256.Sum(s00), Vector256.Sum(s01), Vector256.Sum(s02), Vector256.Sum(s03));
        (sums[4], sums[5], sums[6], sums[7]) = (Vector256.Sum(s10), Vector256.Sum(s11), Vector256.Sum(s12), Vector256.Sum(s13));
        (sums[8], sums[9], sums[10], sums[11]) = (Vector256.Sum(s20), Vector256.Sum(s21), Vector256.Sum(s22), Vector256.Sum(s23));
        (sums[12], sums[13], sums[14], sums[15]) = (Vector256.Sum(s30), Vector256.Sum(s31), Vector256.Sum(s32), Vector256.Sum(s33));
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static void Tile4x1Vector256(ushort* w0, ushort* w1, ushort* w2, ushort* w3, float* x0, nint n, ref Sums sums)
    {
        const int half = 8;
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (nint c = 0; c < n; c += 2 * half)
        {
            Vector256<uint> r0 = Vector256.Load((uint*)(w0 + c)), r1 = Vector256.Load((uint*)(w1 + c));
            Vector256<uint> r2 = Vector256.Load((uint*)(w2 + c)), r3 = Vector256.Load((uint*)(w3 + c));
            Vector256<float> xe = Vector256.Load(x0 + c), xo = Vector256.Load(x0 + c + half);
            s0 = Vector256.FusedMultiplyAdd((r0 & high).AsSingle(), xo, Vector256.FusedMultiplyAdd((r0 << 16).AsSingle(), xe, s0));
            s1 = Vector256.FusedMultiplyAdd((r1 & high).AsSingle(), xo, Vector256.FusedMultiplyAdd((r1 << 16).AsSingle(), xe, s1));
            s2 = Vector256.FusedMultiplyAdd((r2 & high).AsSingle(), xo, Vector256.FusedMultiplyAdd((r2 << 16).AsSingle(), xe, s2));
            s3 = Vector256.FusedMultiplyAdd((r3 & high).AsSingle(), xo, Vector256.FusedMultiplyAdd((r3 << 16).AsSingle(), xe, s3));
        }
        (sums[0], sums[4], sums[8], sums[12]) = (Vector256.Sum(s0), Vector256.Sum(s1), Vector256.Sum(s2), Vector256.Sum(s3));
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static void Tile4x4Vector128(ushort* w0, ushort* w1, ushort* w2, ushort* w3, float* x0, float* x1, float* x2, float* x3, nint n, ref Sums sums)
    {
        const int half = 4;
        var high = Vector128.Create(0xFFFF0000u);
        Vector128<float> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
        Vector128<float> s20 = default, s21 = default, s22 = default, s23 = default, s30 = default, s31 = default, s32 = default, s33 = default;
        for (nint c = 0; c < n; c += 2 * half)
        {
            Vector128<uint> r0 = Vector128.Load((uint*)(w0 + c)), r1 = Vector128.Load((uint*)(w1 + c));
            Vector128<uint> r2 = Vector128.Load((uint*)(w2 + c)), r3 = Vector128.Load((uint*)(w3 + c));
            Vector128<float> e0 = (r0 << 16).AsSingle(), e1 = (r1 << 16).AsSingle(), e2 = (r2 << 16).AsSingle(), e3 = (r3 << 16).AsSingle();
            Vector128<float> o0 = (r0 & high).AsSingle(), o1 = (r1 & high).AsSingle(), o2 = (r2 & high).AsSingle(), o3 = (r3 & high).AsSingle();
            Vector128<float> xe = Vector128.Load(x0 + c), xo = Vector128.Load(x0 + c + half);
            s00 = Vector128.FusedMultiplyAdd(o0, xo, Vector128.FusedMultiplyAdd(e0, xe, s00));
            s10 = Vector128.FusedMultiplyAdd(o1, xo, Vector128.FusedMultiplyAdd(e1, xe, s10));
            s20 = Vector128.FusedMultiplyAdd(o2, xo, Vector128.FusedMultiplyAdd(e2, xe, s20));
            s30 = Vector128.FusedMultiplyAdd(o3, xo, Vector128.FusedMultiplyAdd(e3, xe, s30));
            xe = Vector128.Load(x1 + c); xo = Vector128.Load(x1 + c + half);
            s01 = Vector128.FusedMultiplyAdd(o0, xo, Vector128.FusedMultiplyAdd(e0, xe, s01));
            s11 = Vector128.FusedMultiplyAdd(o1, xo, Vector128.FusedMultiplyAdd(e1, xe, s11));
            s21 = Vector128.FusedMultiplyAdd(o2, xo, Vector128.FusedMultiplyAdd(e2, xe, s21));
            s31 = Vector128.FusedMultiplyAdd(o3, xo, Vector128.FusedMultiplyAdd(e3, xe, s31));
            xe = Vector128.Load(x2 + c); xo = Vector128.Load(x2 + c + half);
            s02 = Vector128.FusedMultiplyAdd(o0, xo, Vector128.FusedMultiplyAdd(e0, xe, s02));
            s12 = Vector128.FusedMultiplyAdd(o1, xo, Vector128.FusedMultiplyAdd(e1, xe, s12));
            s22 = Vector128.FusedMultiplyAdd(o2, xo, Vector128.FusedMultiplyAdd(e2, xe, s22));
            s32 = Vector128.FusedMultiplyAdd(o3, xo, Vector128.FusedMultiplyAdd(e3, xe, s32));
            xe = Vector128.Load(x3 + c); xo = Vector128.Load(x3 + c + half);
            s03 = Vector128.FusedMultiplyAdd(o0, xo, Vector128.FusedMultiplyAdd(e0, xe, s03));
            s13 = Vector128.FusedMultiplyAdd(o1, xo, Vector128.FusedMultiplyAdd(e1, xe, s13));
            s23 = Vector128.FusedMultiplyAdd(o2, xo, Vector128.FusedMultiplyAdd(e2, xe, s23));
            s33 = Vector128.FusedMultiplyAdd(o3, xo, Vector128.FusedMultiplyAdd(e3, xe, s33));
        }
        (sums[0], sums[1], sums[2], sums[3]) = (Vector128.Sum(s00), Vector128.Sum(s01), Vector128.Sum(s02), Vector128.Sum(s03));
        (sums[4], sums[5], sums[6], sums[7]) = (Vector128.Sum(s10), Vector128.Sum(s11), Vector128.Sum(s12), Vector128.Sum(s13));
        (sums[8], sums[9], sums[10], sums[11]) = (Vector128.Sum(s20), Vector128.Sum(s21), Vector128.Sum(s22), Vector128.Sum(s23));
        (sums[12], sums[13], sums[14], sums[15]) = (Vector128.Sum(s30), Vector128.Sum(s31), Vector128.Sum(s32), Vector128.Sum(s33));
    }

    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static void Tile4x1Vector128(ushort* w0, ushort* w1, ushort* w2, ushort* w3, float* x0, nint n, ref Sums sums)
    {
        const int half = 4;
        var high = Vector128.Create(0xFFFF0000u);
        Vector128<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (nint c = 0; c < n; c += 2 * half)
        {
            Vector128<uint> r0 = Vector128.Load((uint*)(w0 + c)), r1 = Vector128.Load((uint*)(w1 + c));
            Vector128<uint> r2 = Vector128.Load((uint*)(w2 + c)), r3 = Vector128.Load((uint*)(w3 + c));
            Vector128<float> xe = Vector128.Load(x0 + c), xo = Vector128.Load(x0 + c + half);
            s0 = Vector128.FusedMultiplyAdd((r0 & high).AsSingle(), xo, Vector128.FusedMultiplyAdd((r0 << 16).AsSingle(), xe, s0));
            s1 = Vector128.FusedMultiplyAdd((r1 & high).AsSingle(), xo, Vector128.FusedMultiplyAdd((r1 << 16).AsSingle(), xe, s1));
            s2 = Vector128.FusedMultiplyAdd((r2 & high).AsSingle(), xo, Vector128.FusedMultiplyAdd((r2 << 16).AsSingle(), xe, s2));
            s3 = Vector128.FusedMultiplyAdd((r3 & high).AsSingle(), xo, Vector128.FusedMultiplyAdd((r3 << 16).AsSingle(), xe, s3));
        }
        (sums[0], sums[4], sums[8], sums[12]) = (Vector128.Sum(s0), Vector128.Sum(s1), Vector128.Sum(s2), Vector128.Sum(s3));
    }
}
