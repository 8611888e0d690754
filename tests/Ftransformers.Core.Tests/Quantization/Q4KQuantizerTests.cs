using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Quantization;

[TestFixture]
public class Q4KQuantizerTests
{
    // Normal weights of σ 0.02, as checkpoints' are about.
    internal static float[] Gaussian(int count, Random rng) =>
        [.. Enumerable.Range(0, count).Select(_ => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()) * 0.02))];

    private static double RmsError(float[] expected, float[] actual) =>
        Math.Sqrt(expected.Zip(actual, (e, a) => (double)(e - a) * (e - a)).Average());

    // Decoded as llama.cpp decodes Q4_K, the blocks stay close to the weights: within 10 % of INT4 g32's error (F16
    // scale and min per 32), the price of Q4_K's 6-bit scales and mins for half a bit per weight less.
    [Test]
    public void Blocks_DecodeNearTheWeights_AsCloseAsInt4Group32Nearly()
    {
        const int rows = 8, cols = 1024;
        float[] w = Gaussian(rows * cols, new Random(7));
        byte[] blocks = Q4KQuantizer.Quantize(w, rows, cols);
        Assert.That(blocks, Has.Length.EqualTo(rows * cols / 256 * 144));
        var decoded = new float[w.Length];
        GgmlBlocks.DequantizeQ4_K(blocks, decoded);
        Int4Weights int4 = Int4Quantizer.Quantize(w, rows, cols, Int4Format.Default);
        var int4Decoded = new float[w.Length];
        for (int r = 0; r < rows; r++)
            int4.DequantizeRow(r, int4Decoded.AsSpan(r * cols, cols));
        double q4k = RmsError(w, decoded), g32 = RmsError(w, int4Decoded), rms = Math.Sqrt(w.Average(v => (double)v * v));
        TestContext.Out.WriteLine($"RMS error / RMS: Q4_K {q4k / rms:P2}, INT4 g32 {g32 / rms:P2}");
        Assert.That(q4k, Is.LessThanOrEqualTo(1.10 * g32));
        Assert.That(q4k / rms, Is.LessThan(0.1));
    }

    // Q5_K's fifth bit halves the step: decoded as llama.cpp decodes Q5_K, the error is under 0.6 of Q4_K's.
    [Test]
    public void Q5KBlocks_DecodeNearerThanQ4K()
    {
        const int rows = 8, cols = 1024;
        float[] w = Gaussian(rows * cols, new Random(7));
        byte[] blocks = Q4KQuantizer.Quantize(w, rows, cols, KBlockFormat.Q5K);
        Assert.That(blocks, Has.Length.EqualTo(rows * cols / 256 * 176));
        float[] q5 = new float[w.Length], q4 = new float[w.Length];
        GgmlBlocks.DequantizeQ5_K(blocks, q5);
        GgmlBlocks.DequantizeQ4_K(Q4KQuantizer.Quantize(w, rows, cols), q4);
        double rms = Math.Sqrt(w.Average(v => (double)v * v));
        TestContext.Out.WriteLine($"RMS error / RMS: Q5_K {RmsError(w, q5) / rms:P2}, Q4_K {RmsError(w, q4) / rms:P2}");
        Assert.That(RmsError(w, q5), Is.LessThan(0.6 * RmsError(w, q4)));
        Assert.Throws<ArgumentException>(() => Q4KQuantizer.Quantize(w, rows, cols, KBlockFormat.Q6K), "another format");
    }

    [Test]
    public void PositiveAndConstantSubBlocks_DecodeExactlyWhereTheGridHoldsThem()
    {
        var w = new float[256];
        w.AsSpan(0, 32).Fill(0.5f);          // constant and positive: the min stays 0, the code range covers it
        for (int i = 32; i < 64; i++)
            w[i] = (i - 32) * -0.125f / 31;  // negative only
        byte[] blocks = Q4KQuantizer.Quantize(w, 1, 256);
        var decoded = new float[256];
        GgmlBlocks.DequantizeQ4_K(blocks, decoded);
        Assert.That(decoded.AsSpan(64).ToArray(), Is.All.Zero, "zero sub-blocks stay zero");
        Assert.That(decoded.AsSpan(0, 32).ToArray(), Is.All.EqualTo(0.5f).Within(0.5f / 63), "a constant sub-block");
        for (int i = 32; i < 64; i++)
            Assert.That(decoded[i], Is.EqualTo(w[i]).Within(0.125 / 15), $"value {i}");
    }

    [Test]
    public void Quantize_RefusesWidthsNotWholeBlocks_AndValuesBeyondF16()
    {
        Assert.Throws<ArgumentException>(() => Q4KQuantizer.Quantize(new float[128], 1, 128));
        var huge = new float[256];
        huge[0] = 1e9f;
        Assert.Throws<ArgumentException>(() => Q4KQuantizer.Quantize(huge, 1, 256));
    }
}
