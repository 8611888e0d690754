using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Quantization;

[TestFixture]
public class Int4RowGroupsTests
{
    [TestCase(false)]
    [TestCase(true)]
    public void From_KeepsEveryCodeScaleAndMin(bool symmetric)
    {
        var rng = new Random(symmetric ? 2 : 1);
        const int rows = 13, cols = 96; // a padded last group
        float[] w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 0.7)).ToArray();
        Int4Weights rowMajor = Int4Quantizer.Quantize(w, rows, cols, new Int4Format(32, symmetric));
        Int4RowGroups groups = Int4RowGroups.From(rowMajor);

        Assert.That((groups.Rows, groups.Cols, groups.Groups, groups.Blocks, groups.Symmetric), Is.EqualTo((rows, cols, 2, 3, symmetric)));
        float[] expected = new float[cols], actual = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
                Assert.That(groups.Code(r, c), Is.EqualTo(rowMajor.Code(r, c)), $"code ({r}, {c})");
            rowMajor.DequantizeRow(r, expected);
            groups.DequantizeRow(r, actual);
            Assert.That(actual, Is.EqualTo(expected), $"row {r}");
        }
    }

    [Test]
    public void From_PutsFourBytesOfEachOfEightRowsInOneLoad()
    {
        // Row r's packed byte j of block 0 is r * 16 + j (codes only matter here).
        const int rows = 8, cols = 32;
        byte[] packed = Enumerable.Range(0, rows * 16).Select(i => (byte)i).ToArray();
        Half[] scales = Enumerable.Repeat((Half)1f, rows).ToArray(), mins = Enumerable.Repeat((Half)0f, rows).ToArray();
        Int4RowGroups groups = Int4RowGroups.From(Int4Weights.FromPinnedArrays(rows, cols, Int4Format.Default, packed, scales, mins));
        // Quad 1 (packed bytes 4..7) is the second 32 bytes: row 0's bytes 4..7, then row 1's, ...
        byte[] expected = Enumerable.Range(0, rows).SelectMany(r => Enumerable.Range(4, 4).Select(j => (byte)(r * 16 + j))).ToArray();
        Assert.That(groups.Packed.AsSpan(32, 32).ToArray(), Is.EqualTo(expected));
    }

    [Test]
    public void From_RefusesOtherGroupSizes()
    {
        Int4Weights g128 = Int4Quantizer.Quantize(new float[128], 1, 128, new Int4Format(128, false));
        Assert.That(Int4RowGroups.Suits(g128), Is.False);
        Assert.That(() => Int4RowGroups.From(g128), Throws.ArgumentException.With.Message.Contains("group size 32"));
    }
}
