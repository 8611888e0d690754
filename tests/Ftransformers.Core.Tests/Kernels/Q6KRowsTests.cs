using System.Buffers.Binary;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Q6KRowsTests
{
    private static readonly KernelPath[] Paths = [KernelPath.Scalar, KernelPath.Vector128, KernelPath.Dp, KernelPath.Avx2, KernelPath.Avx512];

    // A block's fields as drawn: the super-scale, a signed 8-bit scale per sub-block of 16, a 6-bit code per value.
    private sealed record Fields(float D, int[] Scales, int[] Codes);

    // Random Q6_K rows (every scale from -128 to 127 and every code value drawn), packed as the format defines it, with
    // the fields kept for the reference.
    private static (KBlockLayout Layout, Fields[] Blocks) RandomRows(int rows, int cols, Random rng)
    {
        int count = rows * cols / KBlockLayout.BlockValues;
        var bytes = PinnedArray<byte>.Uninitialized(count * KBlockLayout.Q6KBlockBytes);
        var fields = new Fields[count];
        for (int b = 0; b < count; b++)
        {
            var f = new Fields((float)(Half)(rng.NextDouble() * 0.001), [.. Enumerable.Range(0, 16).Select(_ => rng.Next(-128, 128))],
                [.. Enumerable.Range(0, 256).Select(_ => rng.Next(64))]);
            Pack(f, bytes.Span.Slice(b * KBlockLayout.Q6KBlockBytes, KBlockLayout.Q6KBlockBytes));
            fields[b] = f;
        }
        unsafe
        {
            return (new KBlockLayout(KBlockFormat.Q6K, bytes.Pointer, rows, cols, bytes), fields);
        }
    }

    // ggml's block_q6_K: ql[128] (low four bits), qh[64] (high two bits), scales[16], then d. In each half of 128
    // values, value 32k + l sits in the low (k < 2) or high nibble of ql[l + 32 (k mod 2)] and bits 2k of qh[l].
    private static void Pack(Fields f, Span<byte> block)
    {
        block[..192].Clear();
        for (int half = 0; half < 2; half++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++)
                {
                    int code = f.Codes[128 * half + 32 * k + l];
                    block[64 * half + 32 * (k % 2) + l] |= (byte)((code & 15) << (4 * (k / 2)));
                    block[128 + 32 * half + l] |= (byte)((code >> 4) << (2 * k));
                }
        for (int j = 0; j < 16; j++)
            block[192 + j] = (byte)(sbyte)f.Scales[j];
        BinaryPrimitives.WriteUInt16LittleEndian(block[208..], BitConverter.HalfToUInt16Bits((Half)f.D));
    }

    [Test]
    public void Packing_IsTheFormatLlamaCppDecodes()
    {
        (KBlockLayout layout, Fields[] blocks) = RandomRows(1, 512, new Random(3));
        var values = new float[512];
        GgmlBlocks.DequantizeQ6_K(layout.Row(0), values);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 256; i++)
            {
                Fields f = blocks[b];
                Assert.That(values[b * 256 + i], Is.EqualTo(f.D * f.Scales[i / 16] * (f.Codes[i] - 32)), $"value {b * 256 + i}");
            }
    }

    private static IEnumerable<TestCaseData> Cases() =>
        from path in Paths
        from shape in new[] { (1, 256, 1), (5, 512, 3), (6, 256, 4), (7, 768, 7), (2, 2048, 2) }
        select new TestCaseData(path, shape.Item1, shape.Item2, shape.Item3);

    // Σ over groups of 32 of d · xscale · Σ scale · (code − 32) · x code (exact), within the F32 rounding of that sum;
    // rows [1, rows) only.
    [TestCaseSource(nameof(Cases))]
    public void Rows_EqualScaledExactGroupDots(KernelPath path, int rows, int cols, int tokens)
    {
        KernelPaths.Require(path);
        var rng = new Random(rows * 31 + cols);
        (KBlockLayout layout, Fields[] blocks) = RandomRows(rows, cols, rng);
        var x = new Int8Activations();
        x.QuantizePerBlock(Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray(), tokens, cols);
        var y = new float[tokens * rows];
        Q6KRows.RowsOn(path, layout, 1 % rows, rows, x, y);
        int perRow = cols / 256;
        for (int t = 0; t < tokens; t++)
            for (int r = 1 % rows; r < rows; r++)
            {
                double exact = 0, magnitude = 0;
                for (int g = 0; g < cols / 32; g++)
                {
                    Fields f = blocks[r * perRow + g / 8];
                    long dot = 0;
                    for (int i = 0; i < 32; i++)
                    {
                        int within = (g % 8) * 32 + i;
                        dot += (long)f.Scales[within / 16] * (f.Codes[within] - 32) * x.Values(t)[g * 32 + i];
                    }
                    double term = (double)f.D * x.Scales(t)[g] * dot;
                    exact += term;
                    magnitude += Math.Abs(term);
                }
                // Each group's sum is exact; its scale product, conversion and addition round (2^-24 relative each).
                Assert.That(y[t * rows + r], Is.EqualTo(exact).Within((cols / 16 + 4) * magnitude * Math.Pow(2, -24) + 1e-12), $"row {r}, token {t}");
            }
        if (rows > 1)
            Assert.That(y[0], Is.Zero, "rows outside the range are untouched");
    }

    // The codes' extremes (0 and 63) against the scales' (-128 and 127) and x codes of ±127: the int16 pair sums of the
    // x86 path are at their widest here.
    [TestCaseSource(nameof(Paths))]
    public void Rows_AreExactAtTheExtremes(KernelPath path)
    {
        KernelPaths.Require(path);
        const int cols = 256;
        var bytes = PinnedArray<byte>.Uninitialized(KBlockLayout.Q6KBlockBytes);
        var f = new Fields(1, [.. Enumerable.Range(0, 16).Select(j => j % 2 == 0 ? -128 : 127)], [.. Enumerable.Range(0, 256).Select(i => i % 3 == 0 ? 0 : 63)]);
        Pack(f, bytes.Span);
        var x = new Int8Activations();
        x.QuantizePerBlock(Enumerable.Range(0, cols).Select(i => i % 2 == 0 ? 1f : -1f).ToArray(), 1, cols);
        var y = new float[1];
        unsafe
        {
            Q6KRows.RowsOn(path, new KBlockLayout(KBlockFormat.Q6K, bytes.Pointer, 1, cols, bytes), 0, 1, x, y);
        }
        double exact = 0;
        for (int i = 0; i < cols; i++)
            exact += (double)x.Scales(0)[i / 32] * f.Scales[i / 16] * (f.Codes[i] - 32) * x.Values(0)[i];
        Assert.That(y[0], Is.EqualTo(exact).Within(Math.Abs(exact) * 1e-6));
    }

    // Batched decoding must equal each request alone.
    [Test]
    public void Rows_GiveEachTokenTheSameBits_WhateverTokensShareItsPass([ValueSource(nameof(Paths))] KernelPath path)
    {
        KernelPaths.Require(path);
        var rng = new Random(5);
        const int rows = 9, cols = 512, tokens = 11;
        KBlockLayout layout = RandomRows(rows, cols, rng).Layout;
        BatchInvariance.AssertEachTokenAlone(rows, cols, tokens, rng, (x, y) => Q6KRows.RowsOn(path, layout, 0, rows, x, y));
    }

    [Test]
    public void Rows_RefuseMismatchedOperands() =>
        KBlockRowsRefusals.AssertRefused(RandomRows(2, 256, new Random(1)).Layout, KBlockFormat.Q4K, KernelPath.AvxVnni,
            (path, layout, start, end, x, y) => Q6KRows.RowsOn(path, layout, start, end, x, y));

    [Test]
    public void Dispatch_TakesTheFastestPath()
    {
        KernelPath expected = new[] { KernelPath.Avx512, KernelPath.Avx2, KernelPath.Dp, KernelPath.Vector128 }.FirstOrDefault(KernelPaths.IsSupported, KernelPath.Scalar);
        Assert.That(Q6KRows.ActivePath, Is.EqualTo(expected));
    }
}
