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
        const int rows = 29, cols = 96; // a padded last group, whose row 12 has no high-nibble partner
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

    [TestCase(false)]
    [TestCase(true)]
    public void ToWeights_GivesBackTheRowsExactly(bool symmetric)
    {
        var rng = new Random(symmetric ? 4 : 3);
        const int rows = 29, cols = 96;
        float[] w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 0.7)).ToArray();
        Int4Weights rowMajor = Int4Quantizer.Quantize(w, rows, cols, new Int4Format(32, symmetric));
        Int4Weights back = Int4RowGroups.From(rowMajor).ToWeights();
        Assert.That((back.Rows, back.Cols, back.Format), Is.EqualTo((rows, cols, rowMajor.Format)));
        Assert.That(back.Packed.ToArray(), Is.EqualTo(rowMajor.Packed.ToArray()));
        Assert.That(back.Scales.ToArray(), Is.EqualTo(rowMajor.Scales.ToArray()));
        Assert.That(back.Mins.ToArray(), Is.EqualTo(rowMajor.Mins.ToArray()));
    }

    [Test]
    public void From_PutsFourColumnsOfSixteenRowsInOneLoad_RowIAndRowIPlus8InOneLane()
    {
        // Row r's code at column c of block 0 is (r + c) % 16; row-major, packed byte j holds columns j and j + 16.
        const int rows = 16, cols = 32;
        byte[] packed = new byte[rows * 16];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < 16; j++)
                packed[r * 16 + j] = (byte)((r + j) % 16 | (r + j + 16) % 16 << 4);
        Half[] scales = Enumerable.Repeat((Half)1f, rows).ToArray(), mins = Enumerable.Repeat((Half)0f, rows).ToArray();
        Int4RowGroups groups = Int4RowGroups.From(Int4Weights.CopyOf(rows, cols, Int4Format.Default, packed, scales, mins));
        // Quad 5 (columns 20..23) is the sixth 32 bytes: lane i holds row i's codes low and row i + 8's high.
        byte[] expected = Enumerable.Range(0, 8).SelectMany(i => Enumerable.Range(20, 4).Select(c => (byte)((i + c) % 16 | (i + 8 + c) % 16 << 4))).ToArray();
        Assert.That(groups.Packed.Slice(5 * 32, 32).ToArray(), Is.EqualTo(expected));
    }

    [Test]
    public void From_RefusesOtherGroupSizes()
    {
        Int4Weights g128 = Int4Quantizer.Quantize(new float[128], 1, 128, new Int4Format(128, false));
        Assert.That(Int4RowGroups.Suits(g128), Is.False);
        Assert.That(() => Int4RowGroups.From(g128), Throws.ArgumentException.With.Message.Contains("group size 32"));
    }
}
