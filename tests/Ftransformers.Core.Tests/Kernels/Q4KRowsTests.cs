using System.Buffers.Binary;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Q4KRowsTests
{
    private static readonly KernelPath[] Paths = [KernelPath.Scalar, KernelPath.Vector128, KernelPath.Dp, KernelPath.Avx2, KernelPath.AvxVnni, KernelPath.Avx512];

    // A block's fields as drawn: super-scales, 6-bit scales and mins per sub-block, 4-bit codes per value.
    private sealed record Fields(float D, float Dmin, int[] Scales, int[] Mins, int[] Codes);

    private static readonly KBlockFormat[] Formats = [KBlockFormat.Q4K, KBlockFormat.Q5K];

    // Random Q4_K or Q5_K rows (every 6-bit scale and min and every code value drawn), packed as the format defines it,
    // with the fields kept for the reference.
    private static (KBlockLayout Layout, Fields[] Blocks) RandomRows(int rows, int cols, Random rng, KBlockFormat format = KBlockFormat.Q4K)
    {
        int count = rows * cols / KBlockLayout.BlockValues, blockBytes = KBlockLayout.BlockBytesOf(format);
        var bytes = PinnedArray<byte>.Uninitialized(count * blockBytes);
        var fields = new Fields[count];
        for (int b = 0; b < count; b++)
        {
            var f = new Fields((float)(Half)(rng.NextDouble() * 0.01), (float)(Half)(rng.NextDouble() * 0.01),
                [.. Enumerable.Range(0, 8).Select(_ => rng.Next(64))], [.. Enumerable.Range(0, 8).Select(_ => rng.Next(64))],
                [.. Enumerable.Range(0, 256).Select(_ => rng.Next(format == KBlockFormat.Q5K ? 32 : 16))]);
            Pack(f, bytes.Span.Slice(b * blockBytes, blockBytes), format);
            fields[b] = f;
        }
        unsafe
        {
            return (new KBlockLayout(format, bytes.Pointer, rows, cols, bytes), fields);
        }
    }

    // ggml's block_q4_K: d, dmin, 12 bytes of scales (get_scale_min_k4's packing), then codes two sub-blocks a 32-byte
    // run; block_q5_K: the same with a 32-byte plane of fifth bits (bit j of byte l: value l of sub-block j) before the
    // codes' low four bits.
    private static void Pack(Fields f, Span<byte> block, KBlockFormat format)
    {
        int nibbles = 16;
        if (format == KBlockFormat.Q5K)
        {
            nibbles = 48;
            block.Slice(16, 32).Clear();
            for (int i = 0; i < 256; i++)
                block[16 + i % 32] |= (byte)((f.Codes[i] >> 4) << (i / 32));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(block, BitConverter.HalfToUInt16Bits((Half)f.D));
        BinaryPrimitives.WriteUInt16LittleEndian(block[2..], BitConverter.HalfToUInt16Bits((Half)f.Dmin));
        for (int i = 0; i < 4; i++)
        {
            block[4 + i] = (byte)(f.Scales[i] | (f.Scales[i + 4] >> 4 << 6));
            block[8 + i] = (byte)(f.Mins[i] | (f.Mins[i + 4] >> 4 << 6));
            block[12 + i] = (byte)((f.Scales[i + 4] & 15) | ((f.Mins[i + 4] & 15) << 4));
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                block[nibbles + 32 * c + l] = (byte)((f.Codes[64 * c + l] & 15) | ((f.Codes[64 * c + 32 + l] & 15) << 4));
    }

    [Test]
    public void Packing_IsTheFormatLlamaCppDecodes([ValueSource(nameof(Formats))] KBlockFormat format)
    {
        (KBlockLayout layout, Fields[] blocks) = RandomRows(1, 512, new Random(3), format);
        var values = new float[512];
        if (format == KBlockFormat.Q5K)
            GgmlBlocks.DequantizeQ5_K(layout.Row(0), values);
        else
            GgmlBlocks.DequantizeQ4_K(layout.Row(0), values);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 256; i++)
            {
                Fields f = blocks[b];
                Assert.That(values[b * 256 + i], Is.EqualTo(f.D * f.Scales[i / 32] * f.Codes[i] - f.Dmin * f.Mins[i / 32]), $"value {b * 256 + i}");
            }
    }

    // Every F16, subnormals included (small blocks' super-scales are), converts to the library's value, in a scalar
    // and in a vector lane; infinities stay infinite and NaNs NaN, so a corrupt block computes as llama.cpp's decoding
    // reads it.
    [Test]
    public void SuperScales_ConvertEveryF16AsTheLibraryDoes()
    {
        for (int bits = 0; bits < 0x10000; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            foreach (float actual in new[] { Float16.ToSingle((ushort)bits), System.Runtime.Intrinsics.Vector128.GetElement(Float16.ToSingle(System.Runtime.Intrinsics.Vector128.Create((uint)bits)), 3) })
                if (float.IsNaN(expected))
                    Assert.That(actual, Is.NaN, $"0x{bits:X4}");
                else
                    Assert.That(BitConverter.SingleToUInt32Bits(actual), Is.EqualTo(BitConverter.SingleToUInt32Bits(expected)), $"0x{bits:X4}");
        }
    }

    private static IEnumerable<TestCaseData> Cases() =>
        from format in Formats
        from path in Paths
        from shape in new[] { (1, 256, 1), (5, 512, 3), (6, 256, 4), (7, 768, 7), (2, 2048, 2) }
        select new TestCaseData(format, path, shape.Item1, shape.Item2, shape.Item3);

    // Σ over sub-blocks of (d · scale) · xscale · exact dot − (dmin · min) · xscale · Σ x codes, within the F32 rounding
    // of that sum; rows [1, rows) only.
    [TestCaseSource(nameof(Cases))]
    public void Rows_EqualScaledExactSubBlockDots(KBlockFormat format, KernelPath path, int rows, int cols, int tokens)
    {
        KernelPaths.Require(path);
        var rng = new Random(rows * 31 + cols);
        (KBlockLayout layout, Fields[] blocks) = RandomRows(rows, cols, rng, format);
        var x = new Int8Activations();
        x.QuantizePerBlock(Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray(), tokens, cols);
        var y = new float[tokens * rows];
        Q4KRows.RowsOn(path, layout, 1 % rows, rows, x, y);
        int perRow = cols / 256;
        for (int t = 0; t < tokens; t++)
            for (int r = 1 % rows; r < rows; r++)
            {
                double exact = 0, magnitude = 0;
                for (int s = 0; s < cols / 32; s++)
                {
                    Fields f = blocks[r * perRow + s / 8];
                    long dot = 0, sum = 0;
                    for (int i = 0; i < 32; i++)
                    {
                        int value = x.Values(t)[s * 32 + i];
                        dot += f.Codes[(s % 8) * 32 + i] * value;
                        sum += value;
                    }
                    double xs = x.Scales(t)[s];
                    double scaled = (double)f.D * f.Scales[s % 8] * xs * dot, min = (double)f.Dmin * f.Mins[s % 8] * xs * sum;
                    exact += scaled - min;
                    magnitude += Math.Abs(scaled) + Math.Abs(min);
                }
                // Each dot is exact; each term's scale product, conversion and addition round (2^-24 relative each).
                Assert.That(y[t * rows + r], Is.EqualTo(exact).Within((cols / 16 + 4) * magnitude * Math.Pow(2, -24) + 1e-12), $"row {r}, token {t}");
            }
        if (rows > 1)
            Assert.That(y[0], Is.Zero, "rows outside the range are untouched");
    }

    // Batched decoding must equal each request alone.
    [Test]
    public void Rows_GiveEachTokenTheSameBits_WhateverTokensShareItsPass([ValueSource(nameof(Formats))] KBlockFormat format, [ValueSource(nameof(Paths))] KernelPath path)
    {
        KernelPaths.Require(path);
        var rng = new Random(5);
        const int rows = 9, cols = 512, tokens = 11;
        KBlockLayout layout = RandomRows(rows, cols, rng, format).Layout;
        BatchInvariance.AssertEachTokenAlone(rows, cols, tokens, rng, (x, y) => Q4KRows.RowsOn(path, layout, 0, rows, x, y));
    }

    [Test]
    public void Rows_RefuseMismatchedOperands() =>
        KBlockRowsRefusals.AssertRefused(RandomRows(2, 256, new Random(1)).Layout, KBlockFormat.Q6K, KernelPath.AdvSimd,
            (path, layout, start, end, x, y) => Q4KRows.RowsOn(path, layout, start, end, x, y));

    [Test]
    public void Dispatch_TakesTheFastestPath()
    {
        KernelPath expected = new[] { KernelPath.Avx512, KernelPath.AvxVnni, KernelPath.Avx2, KernelPath.Dp, KernelPath.Vector128 }.FirstOrDefault(KernelPaths.IsSupported, KernelPath.Scalar);
        Assert.That(Q4KRows.ActivePath, Is.EqualTo(expected));
    }
}
