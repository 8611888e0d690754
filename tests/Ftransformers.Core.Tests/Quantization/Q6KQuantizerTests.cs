using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Quantization;

[TestFixture]
public class Q6KQuantizerTests
{
    // Decoded as llama.cpp decodes Q6_K, the blocks stay within a quarter of Q4_K's error: two more bits a code (a
    // quarter of the step), each 16 values scaled alone.
    [Test]
    public void Blocks_DecodeNearTheWeights_FourTimesCloserThanQ4K()
    {
        const int rows = 8, cols = 1024;
        float[] w = Q4KQuantizerTests.Gaussian(rows * cols, new Random(7));
        byte[] blocks = Q6KQuantizer.Quantize(w, rows, cols);
        Assert.That(blocks, Has.Length.EqualTo(rows * cols / 256 * 210));
        float[] q6 = new float[w.Length], q4 = new float[w.Length];
        GgmlBlocks.DequantizeQ6_K(blocks, q6);
        GgmlBlocks.DequantizeQ4_K(Q4KQuantizer.Quantize(w, rows, cols), q4);
        double Error(float[] decoded) => Math.Sqrt(w.Zip(decoded, (e, a) => (double)(e - a) * (e - a)).Average());
        double rms = Math.Sqrt(w.Average(v => (double)v * v));
        TestContext.Out.WriteLine($"RMS error / RMS: Q6_K {Error(q6) / rms:P2}, Q4_K {Error(q4) / rms:P2}");
        Assert.That(Error(q6), Is.LessThan(Error(q4) / 4));
    }

    // A sub-block's value of largest magnitude sits on code −32 (or, rounded to 8-bit scales, next to it), as
    // llama.cpp's reference puts it; zeros decode to zero.
    [Test]
    public void Extremes_AndZeros_DecodeOnTheGrid()
    {
        var w = new float[256];
        for (int i = 0; i < 128; i++)
            w[i] = (i % 16) - 8; // each sub-block: -8 .. 7, its extreme -8
        byte[] blocks = Q6KQuantizer.Quantize(w, 1, 256);
        var decoded = new float[256];
        GgmlBlocks.DequantizeQ6_K(blocks, decoded);
        for (int i = 0; i < 128; i++)
            Assert.That(decoded[i], Is.EqualTo(w[i]).Within(8 / 32.0 / 2 + 8 * 0.01), $"value {i}");
        Assert.That(decoded[128..], Is.All.Zero, "zero sub-blocks");
    }

    [Test]
    public void Quantize_RefusesWhatItCannotHold()
    {
        Assert.Throws<ArgumentException>(() => Q6KQuantizer.Quantize(new float[300], 1, 300), "columns not whole blocks");
        Assert.Throws<ArgumentException>(() => Q6KQuantizer.Quantize(new float[256], 2, 256), "fewer values than rows x cols");
        var nan = new float[256];
        nan[5] = float.NaN;
        Assert.That(() => Q6KQuantizer.Quantize(nan, 1, 256), Throws.ArgumentException.With.Message.Contains("NaN"));
    }
}
