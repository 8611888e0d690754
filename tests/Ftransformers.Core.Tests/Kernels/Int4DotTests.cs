using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int4DotTests
{
    private static IEnumerable<TestCaseData> Cases() =>
        from path in KernelPaths.All
        from format in new[] { new Int4Format(32, false), new Int4Format(32, true), new Int4Format(128, false), new Int4Format(128, true) }
        // Block counts 4, 8, 12, 7, 20, 25: every remainder the four-block SDOT step and the
        // two-block AVX2 step leave.
        from shape in new[] { (Cols: 128, Tokens: 1), (Cols: 256, Tokens: 3), (Cols: 384, Tokens: 16), (Cols: 128, Tokens: 64), (Cols: 224, Tokens: 3), (Cols: 640, Tokens: 2), (Cols: 800, Tokens: 5) }
        where shape.Cols % format.GroupSize == 0
        select new TestCaseData(path, format, shape.Cols, shape.Tokens);

    [TestCaseSource(nameof(Cases))]
    public void RowDot_MatchesFloat64OfTheDequantizedOperands(KernelPath path, Int4Format format, int cols, int tokens)
    {
        KernelPaths.Require(path);
        var rng = new Random(cols * 31 + tokens + (int)path * 1000 + format.GroupSize + (format.Symmetric ? 1 : 0));
        const int rows = 5;
        float[] w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1.2)).ToArray();
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        Int4Weights weights = Int4Quantizer.Quantize(w, rows, cols, format);
        var act = new Int8Activations();
        act.QuantizePerBlock(x, tokens, cols);

        var results = new float[tokens];
        for (int r = 0; r < rows; r++)
        {
            Int4Dot.RowDotOn(path, weights.Layout, r, act, results);
            for (int t = 0; t < tokens; t++)
                Int4Float64.AssertRowDot(results[t], weights, r, act, t);
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void Rows_EqualRowDotOfEachRow(KernelPath path, Int4Format format, int cols, int tokens)
    {
        KernelPaths.Require(path);
        var rng = new Random(cols + tokens);
        const int rows = 7; // rows 1..6 of 7: a range that starts and ends inside the matrix
        Int4Weights weights = Int4Quantizer.Quantize(Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), rows, cols, format);
        var act = new Int8Activations();
        act.QuantizePerBlock(Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray(), tokens, cols);
        var y = new float[tokens * rows];
        Int4Dot.RowsOn(path, weights.Layout, 1, rows, act, y);
        var one = new float[tokens];
        for (int r = 1; r < rows; r++)
        {
            Int4Dot.RowDotOn(path, weights.Layout, r, act, one);
            for (int t = 0; t < tokens; t++)
                Assert.That(y[t * rows + r], Is.EqualTo(one[t]).Within(Math.Abs(one[t]) * 1e-5 + 1e-5), $"row {r}, token {t}");
        }
        Assert.That(Enumerable.Range(0, tokens).Select(t => y[t * rows]), Is.All.Zero, "rows outside the range are untouched");
    }

    private static IEnumerable<TestCaseData> ExtremeCases() =>
        from path in KernelPaths.All
        from code in new[] { 0, 15 }
        from sign in new[] { 1, -1 }
        select new TestCaseData(path, code, sign);

    // Every weight code at 0 or 15 against every activation code at +-127: the largest integer sums a block can make,
    // which the SDOT kernel's pairwise reduction must keep exact.
    [TestCaseSource(nameof(ExtremeCases))]
    public void Rows_OfExtremeCodes_AreExact(KernelPath path, int code, int sign)
    {
        KernelPaths.Require(path);
        const int rows = 3, cols = 7168 + 96, tokens = 3;
        byte[] packed = Enumerable.Repeat((byte)(code | code << 4), rows * cols / 2).ToArray();
        Half[] scales = Enumerable.Repeat((Half)0.5f, rows * cols / 32).ToArray(), mins = Enumerable.Repeat((Half)(-1f), rows * cols / 32).ToArray();
        Int4Weights weights = Int4Weights.CopyOf(rows, cols, Int4Format.Default, packed, scales, mins);
        var act = new Int8Activations();
        act.QuantizePerBlock(Enumerable.Repeat(sign * 2f, tokens * cols).ToArray(), tokens, cols);
        Assert.That(act.Values(0)[0], Is.EqualTo(sign * 127), "activations sit at the extreme code");
        var y = new float[tokens * rows];
        Int4Dot.RowsOn(path, weights.Layout, 0, rows, act, y);
        // Each weight is 0.5 * code - 1 and each activation 2 * sign: exact in float64, and the kernel's float sums of
        // integer-valued block terms are exact too.
        double expected = cols * (0.5 * code - 1) * 2 * sign;
        Assert.That(y, Is.All.EqualTo(expected).Within(Math.Abs(expected) * 1e-6));
    }

    [Test]
    public void RowDot_ApproximatesTheFloatProduct_WithinTheQuantizationError()
    {
        var rng = new Random(5);
        const int cols = 1024;
        float[] w = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] x = Enumerable.Range(0, cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        Int4Weights weights = Int4Quantizer.Quantize(w, 1, cols, Int4Format.Default);
        var act = new Int8Activations();
        act.QuantizePerBlock(x, 1, cols);
        var result = new float[1];
        Int4Dot.RowDot(weights.Layout, 0, act, result);
        double exact = w.Zip(x, (a, b) => (double)a * b).Sum();
        // Weight error <= scale/2 (~1/15) and activation error <= 1/254 per element, random signs: ~sqrt(n) growth.
        Assert.That(result[0], Is.EqualTo(exact).Within(0.05 * Math.Sqrt(cols)));
    }
}
