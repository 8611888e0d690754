using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int8ActivationsTests
{
    // Routed experts quantize every token once and gather their tokens' rows: the same codes, scales and sums as
    // quantizing those rows alone.
    [Test]
    public void GatherRows_EqualsQuantizingTheRowsAlone([Values(32, 96)] int blockSize)
    {
        const int tokens = 7, cols = 96;
        var rng = new Random(blockSize);
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var all = new Int8Activations();
        all.Quantize(x, tokens, cols, blockSize);
        int[] rows = [5, 0, 5, 3];
        var gathered = new Int8Activations();
        gathered.GatherRows(all, rows);
        var alone = new Int8Activations();
        Assert.That((gathered.Tokens, gathered.Cols, gathered.BlockSize), Is.EqualTo((rows.Length, cols, blockSize)));
        for (int i = 0; i < rows.Length; i++)
        {
            alone.Quantize(x.AsSpan(rows[i] * cols, cols), 1, cols, blockSize);
            Assert.That(gathered.Values(i).ToArray(), Is.EqualTo(alone.Values(0).ToArray()), $"codes of row {i}");
            Assert.That(gathered.Scales(i).ToArray(), Is.EqualTo(alone.Scales(0).ToArray()), $"scales of row {i}");
            Assert.That(gathered.ScaledSums(i).ToArray(), Is.EqualTo(alone.ScaledSums(0).ToArray()), $"sums of row {i}");
            Assert.That(gathered.AllCodeSums.Slice(i * gathered.BlocksPerToken, gathered.BlocksPerToken).ToArray(),
                Is.EqualTo(alone.AllCodeSums.ToArray()), $"code sums of row {i}");
        }
        Assert.That(() => gathered.GatherRows(all, [7]), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("Row 7"));
    }

    [Test]
    public void Quantize_RefusesOtherBlockSizes()
    {
        var x = new Int8Activations();
        Assert.That(() => x.Quantize(new float[64], 1, 64, 16), Throws.ArgumentException.With.Message.Contains("blocks of 16"));
        Assert.That(() => x.QuantizePerBlock(new float[40], 1, 40), Throws.ArgumentException.With.Message.Contains("multiple of 32"));
    }
}
