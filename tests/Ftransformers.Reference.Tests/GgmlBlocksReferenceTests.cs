using Ftransformers.Formats;
using NUnit.Framework;

namespace Ftransformers.Tests.Reference;

/// <summary>Our decoding of ggml's block formats gives llama.cpp's values bit for bit, on blocks its own quantizer made.</summary>
[TestFixture]
public class GgmlBlocksReferenceTests
{
    [Test]
    public void DecodedValues_EqualLlamaCpps([Values(GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.F16, GgmlType.BF16)] GgmlType type,
        [Values(1, 7)] int seed)
    {
        var random = new Random(seed);
        const int count = 256 * 12;
        // Rows of different spreads and signs, with zeros and outliers, as weights have.
        float[] values = [.. Enumerable.Range(0, count).Select(i => (i / 256 % 4) switch
        {
            0 => (float)(random.NextDouble() * 2 - 1),
            1 => (float)((random.NextDouble() - 0.3) * 1e-3),
            2 => i % 17 == 0 ? 40f : (float)(random.NextDouble() * 0.5),
            _ => i % 3 == 0 ? 0f : (float)-random.NextDouble(),
        })];
        byte[] blocks = GgmlReference.Quantize((int)type, values);
        float[] expected = GgmlReference.Dequantize((int)type, blocks, count);
        var ours = new float[count];
        GgmlTypes.Dequantize(type, blocks, ours);
        for (int i = 0; i < count; i++)
            Assert.That(BitConverter.SingleToInt32Bits(ours[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected[i])), $"{type} value {i}: ours {ours[i]}, llama.cpp {expected[i]}");
    }

    [Test]
    public void Q8_0Quantization_EqualsLlamaCpps([Values(1, 2, 3)] int seed)
    {
        var random = new Random(seed);
        float[] values = [.. Enumerable.Range(0, 32 * 64).Select(i => i % 32 == 5 ? 0f : (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-4, 2))))];
        var ours = new byte[64 * 34];
        Ftransformers.Kernels.GgmlBlocks.QuantizeQ8_0(values, ours);
        Assert.That(ours, Is.EqualTo(GgmlReference.Quantize((int)GgmlType.Q8_0, values)));
    }

    [Test]
    public void Q4_0Quantization_EqualsLlamaCpps([Values(1, 2, 3)] int seed)
    {
        var random = new Random(seed);
        float[] values = [.. Enumerable.Range(0, 32 * 64).Select(i => i % 32 == 5 ? 0f : (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-4, 2))))];
        var ours = new byte[64 * 18];
        Ftransformers.Kernels.GgmlBlocks.QuantizeQ4_0(values, ours);
        Assert.That(ours, Is.EqualTo(GgmlReference.Quantize((int)GgmlType.Q4_0, values)));
    }

    [Test]
    public void BlockSizes_AreLlamaCpps([Values] GgmlType type)
    {
        (int values, int bytes) = GgmlTypes.Block(type)!.Value;
        Assert.That(GgmlReference.Block((int)type), Is.EqualTo(((long)values, (long)bytes)), $"{type}");
    }
}
