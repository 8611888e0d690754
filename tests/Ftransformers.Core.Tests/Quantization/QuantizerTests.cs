using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Quantization;

[TestFixture]
public class QuantizerTests
{
    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * rng.NextDouble() * 4 - 1)).ToArray();
    }

    private static double SquaredError(float[] w, Int4Weights q)
    {
        var row = new float[q.Cols];
        double error = 0;
        for (int r = 0; r < q.Rows; r++)
        {
            q.DequantizeRow(r, row);
            for (int c = 0; c < q.Cols; c++)
                error += Math.Pow(w[r * q.Cols + c] - row[c], 2);
        }
        return error;
    }

    [TestCase(32, false)]
    [TestCase(32, true)]
    [TestCase(128, false)]
    [TestCase(128, true)]
    public void Int4RoundToNearest_ErrsByAtMostHalfAStep(int group, bool symmetric)
    {
        float[] w = Random(8 * 256, group);
        Int4Weights q = Int4Quantizer.Quantize(w, 8, 256, new Int4Format(group, symmetric), search: false);
        var row = new float[256];
        for (int r = 0; r < 8; r++)
        {
            q.DequantizeRow(r, row);
            for (int c = 0; c < 256; c++)
            {
                float step = Math.Abs((float)q.ScalesRow(r)[c / group]);
                Assert.That(Math.Abs(w[r * 256 + c] - row[c]), Is.LessThanOrEqualTo(step / 2 * 1.0001 + 1e-7), $"({r}, {c})");
            }
        }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Int4_OfWeightsBeyondF16Range_IsRefusedWithTheReason(bool symmetric)
    {
        float[] w = Enumerable.Range(0, 64).Select(i => i * 1e5f).ToArray();
        var error = Assert.Throws<ArgumentException>(() => Int4Quantizer.Quantize(w, 1, 64, new Int4Format(32, symmetric)));
        Assert.That(error!.Message, Does.Contain("F16"));
    }

    [TestCase(32, false)]
    [TestCase(32, true)]
    [TestCase(128, false)]
    [TestCase(128, true)]
    public void Int4Search_NeverErrsMoreThanRoundToNearest_AndUsuallyLess(int group, bool symmetric)
    {
        float[] w = Random(16 * 512, 100 + group);
        var format = new Int4Format(group, symmetric);
        double searched = SquaredError(w, Int4Quantizer.Quantize(w, 16, 512, format, search: true));
        double nearest = SquaredError(w, Int4Quantizer.Quantize(w, 16, 512, format, search: false));
        TestContext.Out.WriteLine($"{format}: squared error {searched:F4} searched vs {nearest:F4} round-to-nearest");
        Assert.That(searched, Is.LessThan(nearest * 0.95));
    }

    [Test]
    public void Int4_PacksWeightsJAndJPlus16IntoOneByte()
    {
        float[] w = Enumerable.Range(0, 32).Select(i => (float)i).ToArray();
        Int4Weights q = Int4Quantizer.Quantize(w, 1, 32, new Int4Format(32, false), search: false);
        Assert.That(q.Packed[0], Is.EqualTo((byte)(q.Code(0, 0) | q.Code(0, 16) << 4)));
        Assert.That(Enumerable.Range(0, 32).Select(c => q.Code(0, c)), Is.Ordered);
        Assert.That(q.Code(0, 0), Is.Zero);
        Assert.That(q.Code(0, 31), Is.EqualTo(15));
    }

    [Test]
    public void Int4_RejectsColumnsThatAreNotAMultipleOfTheGroup()
    {
        var e = Assert.Throws<ArgumentException>(() => Int4Quantizer.Quantize(new float[2 * 96], 2, 96, new Int4Format(128)));
        Assert.That(e!.Message, Does.Contain("128"));
    }

    [Test]
    public void Int8_RoundTripErrorIsAtMostHalfAStepPerRow()
    {
        float[] w = Random(4 * 300, 9);
        Int8Weights q = Int8Quantizer.Quantize(w, 4, 300);
        for (int r = 0; r < 4; r++)
        {
            float absMax = w.Skip(r * 300).Take(300).Max(Math.Abs);
            for (int c = 0; c < 300; c++)
            {
                Assert.That(q.Row(r)[c], Is.InRange(-127, 127));
                // Least squares may move the scale slightly off absMax/127; allow for it in the bound.
                Assert.That(Math.Abs(w[r * 300 + c] - q.Scale(r) * q.Row(r)[c]), Is.LessThanOrEqualTo(absMax / 127 * 0.6));
            }
        }
    }

    [Test]
    public void TinyValues_QuantizeToValidCodes()
    {
        float[] x = Enumerable.Range(0, 64).Select(i => (i % 2 == 0 ? 1 : -1) * 1e-38f * (i + 1)).ToArray();
        var a = new Int8Activations();
        a.QuantizePerBlock(x, 1, 64);
        Assert.That(a.Values(0).ToArray(), Is.All.InRange(-127, 127));
        Int8Weights w = Int8Quantizer.Quantize(x, 1, 64);
        Assert.That(w.Row(0).ToArray(), Is.All.InRange(-127, 127));
        Assert.That(float.IsFinite(w.Scale(0)), Is.True);
    }

    [TestCase(32)]
    [TestCase(96)]
    public void Activations_QuantizePerBlockAndPerToken_WithinHalfAStep(int cols)
    {
        float[] x = Random(3 * cols, cols);
        var a = new Int8Activations();
        a.QuantizePerToken(x, 3, cols);
        for (int t = 0; t < 3; t++)
            for (int c = 0; c < cols; c++)
                Assert.That(Math.Abs(x[t * cols + c] - a.Scales(t)[0] * a.Values(t)[c]), Is.LessThanOrEqualTo(a.Scales(t)[0] / 2 * 1.0001));
        a.QuantizePerBlock(x, 3, cols);
        Assert.That(a.BlocksPerToken, Is.EqualTo(cols / 32));
        for (int t = 0; t < 3; t++)
            for (int b = 0; b < cols / 32; b++)
                Assert.That(a.ScaledSums(t)[b], Is.EqualTo(a.Scales(t)[b] * a.Values(t).Slice(b * 32, 32).ToArray().Sum(v => (int)v)).Within(1e-5));
    }
}
