using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int8BlockRowsTests
{
    private static readonly KernelPath[] Paths = [.. KernelPaths.All, KernelPath.AvxVnni];

    // Random Q8_0-like weights (codes over the full signed range, -128 included) with a scale per block of 32.
    private static unsafe (Int8Weights Weights, sbyte[] Codes, float[] Scales) RandomWeights(int rows, int cols, Random rng)
    {
        var codes = Ftransformers.Memory.PinnedArray<sbyte>.Uninitialized(rows * cols);
        var scales = Ftransformers.Memory.PinnedArray<float>.Uninitialized(rows * cols / 32);
        for (int i = 0; i < codes.Length; i++)
            codes.Span[i] = (sbyte)rng.Next(-128, 128);
        for (int i = 0; i < scales.Length; i++)
            scales.Span[i] = (float)(rng.NextDouble() * 0.02);
        var weights = new Int8Weights(rows, cols, codes.Pointer, scales.Pointer, (codes, scales), blockSize: 32);
        return (weights, codes.Span.ToArray(), scales.Span.ToArray());
    }

    private static IEnumerable<TestCaseData> Cases() =>
        from path in Paths
        from shape in new[] { (1, 32, 1), (5, 64, 3), (6, 96, 4), (7, 224, 7), (2, 1024, 2) }
        select new TestCaseData(path, shape.Item1, shape.Item2, shape.Item3);

    // Σ over blocks of scale · xscale · the exact integer dot, within the F32 rounding of that sum; rows [1, rows).
    [TestCaseSource(nameof(Cases))]
    public void Rows_EqualScaledExactBlockDots(KernelPath path, int rows, int cols, int tokens)
    {
        KernelPaths.Require(path);
        var rng = new Random(rows * 31 + cols);
        (Int8Weights weights, sbyte[] codes, float[] scales) = RandomWeights(rows, cols, rng);
        var x = new Int8Activations();
        x.QuantizePerBlock(Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray(), tokens, cols);
        var y = new float[tokens * rows];
        Int8BlockRows.RowsOn(path, weights.Layout, 1 % rows, rows, x, y);
        for (int t = 0; t < tokens; t++)
            for (int r = 1 % rows; r < rows; r++)
            {
                double exact = 0, magnitude = 0;
                for (int b = 0; b < cols / 32; b++)
                {
                    long dot = 0;
                    for (int c = b * 32; c < (b + 1) * 32; c++)
                        dot += codes[r * cols + c] * x.Values(t)[c];
                    double term = (double)scales[r * cols / 32 + b] * x.Scales(t)[b] * dot;
                    exact += term;
                    magnitude += Math.Abs(term);
                }
                // Each block's dot is exact; the scale product and each of the block additions round once (2^-24 relative).
                Assert.That(y[t * rows + r], Is.EqualTo(exact).Within((cols / 32 + 3) * magnitude * Math.Pow(2, -24) + 1e-12), $"row {r}, token {t}");
            }
        if (rows > 1)
            Assert.That(y[0], Is.Zero, "rows outside the range are untouched");
    }

    // Batched decoding must equal each request alone.
    [Test]
    public void Rows_GiveEachTokenTheSameBits_WhateverTokensShareItsPass([ValueSource(nameof(Paths))] KernelPath path)
    {
        KernelPaths.Require(path);
        var rng = new Random(5);
        const int rows = 9, cols = 160, tokens = 11;
        Int8Weights weights = RandomWeights(rows, cols, rng).Weights;
        BatchInvariance.AssertEachTokenAlone(rows, cols, tokens, rng, (x, y) => Int8BlockRows.RowsOn(path, weights.Layout, 0, rows, x, y));
    }

    [Test]
    public void Rows_RefuseActivationsOrWeightsOfAnotherScaling()
    {
        var rng = new Random(1);
        Int8Weights blocks = RandomWeights(2, 64, rng).Weights;
        var perToken = new Int8Activations();
        perToken.QuantizePerToken(new float[64], 1, 64);
        Assert.Throws<ArgumentException>(() => Int8BlockRows.Rows(blocks.Layout, 0, 2, perToken, new float[2]));
        var perBlock = new Int8Activations();
        perBlock.QuantizePerBlock(new float[64], 1, 64);
        Assert.Throws<ArgumentException>(() => Int8Dot.Rows(blocks.Layout, 0, 2, perBlock, new float[2]));
    }

    [Test]
    public void Dispatch_TakesTheFastestTilePath()
    {
        KernelPath expected = KernelPaths.IsSupported(KernelPath.AvxVnni) ? KernelPath.AvxVnni
            : KernelPaths.IsSupported(KernelPath.Avx2) ? KernelPath.Avx2 : Int8Dot.ActivePath;
        Assert.That(Int8BlockRows.ActivePath, Is.EqualTo(expected));
    }
}
