using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int8DotTests
{
    private static IEnumerable<TestCaseData> Cases() =>
        from path in KernelPaths.All
        from n in new[] { 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 512, 7168 }
        select new TestCaseData(path, n);

    [TestCaseSource(nameof(Cases))]
    public void Dot_EqualsExactIntegerSum(KernelPath path, int n)
    {
        KernelPaths.Require(path);
        var rng = new Random(n * 7 + (int)path);
        sbyte[] a = Enumerable.Range(0, n).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        sbyte[] b = Enumerable.Range(0, n).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        long expected = a.Zip(b, (x, y) => (long)x * y).Sum();
        Assert.That(Int8Dot.DotOn(path, a, b), Is.EqualTo(expected));
    }

    [TestCaseSource(nameof(Cases))]
    public void Dot_OfExtremeValues_DoesNotSaturate(KernelPath path, int n)
    {
        KernelPaths.Require(path);
        sbyte[] a = Enumerable.Range(0, n).Select(i => (sbyte)(i % 2 == 0 ? -127 : 127)).ToArray();
        sbyte[] b = Enumerable.Range(0, n).Select(i => (sbyte)(i % 2 == 0 ? -127 : 127)).ToArray();
        Assert.That(Int8Dot.DotOn(path, a, b), Is.EqualTo(n * 127 * 127));
    }

    private static IEnumerable<TestCaseData> RowsCases() =>
        from path in KernelPaths.All.Append(KernelPath.AvxVnni)
        from shape in new[] { (Cols: 100, Tokens: 1), (Cols: 64, Tokens: 2), (Cols: 7185, Tokens: 3), (Cols: 96, Tokens: 5), (Cols: 33, Tokens: 9), (Cols: 31, Tokens: 4), (Cols: 160, Tokens: 19), (Cols: 96, Tokens: 70) }
        select new TestCaseData(path, shape.Cols, shape.Tokens);

    // Rows for several tokens (which AVX2 computes several at a time) equal scale * xscale * the exact integer dot.
    [TestCaseSource(nameof(RowsCases))]
    public void Rows_EqualScaledExactDots(KernelPath path, int cols, int tokens)
    {
        KernelPaths.Require(path);
        var rng = new Random(cols + tokens);
        const int rows = 6;
        Int8Weights weights = Int8Quantizer.Quantize(Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), rows, cols);
        var act = new Int8Activations();
        act.QuantizePerToken(Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray(), tokens, cols);
        var y = new float[tokens * rows];
        Int8Dot.RowsOn(path, weights.Layout, 1, rows, act, y);
        for (int t = 0; t < tokens; t++)
        {
            Assert.That(y[t * rows], Is.Zero, "rows outside the range are untouched");
            for (int r = 1; r < rows; r++)
            {
                long dot = 0;
                for (int c = 0; c < cols; c++)
                    dot += weights.Row(r)[c] * act.Values(t)[c];
                double expected = (double)weights.Scale(r) * act.Scales(t)[0] * dot;
                Assert.That(y[t * rows + r], Is.EqualTo(expected).Within(Math.Abs(expected) * 1e-6 + 1e-9), $"row {r}, token {t}");
            }
        }
    }

    // Weights and activations at ±127 in every column: the largest sums the VNNI offset (w + 128) can reach.
    [Test]
    public void Rows_OfExtremeCodes_AreExact([Values(KernelPath.Avx2, KernelPath.AvxVnni, KernelPath.Scalar)] KernelPath path, [Values(1, -1)] int sign)
    {
        KernelPaths.Require(path);
        const int rows = 5, cols = 18432 + 7, tokens = 6;
        float[] w = new float[rows * cols], x = new float[tokens * cols];
        for (int i = 0; i < w.Length; i++)
            w[i] = i % 3 == 0 ? -1f : 1f;
        Array.Fill(x, sign * 1f);
        Int8Weights weights = Int8Quantizer.Quantize(w, rows, cols);
        var act = new Int8Activations();
        act.QuantizePerToken(x, tokens, cols);
        var y = new float[tokens * rows];
        Int8Dot.RowsOn(path, weights.Layout, 0, rows, act, y);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                long dot = 0;
                for (int c = 0; c < cols; c++)
                    dot += weights.Row(r)[c] * act.Values(t)[c];
                Assert.That(y[t * rows + r], Is.EqualTo(weights.Scale(r) * act.Scales(t)[0] * dot), $"row {r}, token {t}");
            }
    }

    // Batched decoding must equal each request alone, on every path: the multi-token tiles give each token the bits of
    // a pass of its own.
    [Test]
    public void Rows_GiveEachTokenTheSameBits_WhateverTokensShareItsPass([Values(KernelPath.Avx2, KernelPath.AvxVnni, KernelPath.Dp)] KernelPath path)
    {
        KernelPaths.Require(path);
        var rng = new Random(23);
        const int rows = 7, cols = 300, tokens = 11;
        Int8Weights weights = Int8Quantizer.Quantize(Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), rows, cols);
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray();
        var all = new Int8Activations();
        all.QuantizePerToken(x, tokens, cols);
        var y = new float[tokens * rows];
        Int8Dot.RowsOn(path, weights.Layout, 0, rows, all, y);
        var alone = new Int8Activations();
        var one = new float[rows];
        for (int t = 0; t < tokens; t++)
        {
            alone.QuantizePerToken(x.AsSpan(t * cols, cols), 1, cols);
            Int8Dot.RowsOn(path, weights.Layout, 0, rows, alone, one);
            Assert.That(one, Is.EqualTo(y.AsSpan(t * rows, rows).ToArray()), $"token {t}");
        }
    }

    [Test]
    public void Dispatch_PicksTheFastestSupportedPath()
    {
        Assert.That(Int8Dot.ActivePath, Is.EqualTo(KernelPaths.Fastest));
        Assert.That(Int4Dot.ActivePath, Is.EqualTo(KernelPaths.Fastest));
        Assert.That(Int8Dot.RowsPath, Is.EqualTo(KernelPaths.IsSupported(KernelPath.AvxVnni) ? KernelPath.AvxVnni : KernelPaths.Fastest));
    }
}
