using System.Buffers.Binary;

namespace Ftransformers.Kernels;

/// <summary>
/// Dequantization of ggml's block formats as llama.cpp defines them (<c>dequantize_row_*</c> in ggml-quants.c), value
/// for value: the float operations are the same, in the same order, so the results are the same bits. Blocks in,
/// floats out; <c>values.Length</c> must be a whole number of blocks.
/// </summary>
public static class GgmlBlocks
{
    /// <summary>Q8_0: 32 values, an f16 scale and 32 signed bytes (34 bytes).</summary>
    public static void DequantizeQ8_0(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int count = Blocks(blocks, values, 32, 34);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 34, 34);
            float d = Half(block, 0);
            Span<float> y = values.Slice(b * 32, 32);
            for (int j = 0; j < 32; j++)
                y[j] = (sbyte)block[2 + j] * d;
        }
    }

    /// <summary>Quantizes to Q8_0 as llama.cpp's reference quantizer does: scale max|x| / 127, codes rounded half away from zero.</summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        int count = Blocks(blocks, values.Length, 32, 34);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * 32, 32);
            Span<byte> block = blocks.Slice(b * 34, 34);
            float amax = 0;
            foreach (float v in x)
                amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127, id = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteUInt16LittleEndian(block, BitConverter.HalfToUInt16Bits((Half)d));
            for (int j = 0; j < 32; j++)
                block[2 + j] = unchecked((byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero));
        }
    }

    /// <summary>
    /// Quantizes to Q4_0 as ggml's reference quantizer does: per block the value of largest magnitude maps to -8, the
    /// scale is its value / -8, codes are x / scale + 8.5 truncated, at most 15.
    /// </summary>
    public static void QuantizeQ4_0(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        int count = Blocks(blocks, values.Length, 32, 18);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * 32, 32);
            Span<byte> block = blocks.Slice(b * 18, 18);
            float amax = 0, max = 0;
            foreach (float v in x)
                if (amax < MathF.Abs(v))
                    (amax, max) = (MathF.Abs(v), v);
            float d = max / -8, id = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteUInt16LittleEndian(block, BitConverter.HalfToUInt16Bits((Half)d));
            for (int j = 0; j < 16; j++)
            {
                int low = Math.Min(15, (int)(sbyte)(x[j] * id + 8.5f)), high = Math.Min(15, (int)(sbyte)(x[16 + j] * id + 8.5f));
                block[2 + j] = (byte)(low | high << 4);
            }
        }
    }

    /// <summary>Q4_0: 32 values, an f16 scale and 16 bytes of nibbles, offset by 8 (18 bytes).</summary>
    public static void DequantizeQ4_0(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int count = Blocks(blocks, values, 32, 18);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 18, 18);
            float d = Half(block, 0);
            Span<float> y = values.Slice(b * 32, 32);
            for (int j = 0; j < 16; j++)
            {
                y[j] = ((block[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = ((block[2 + j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>Q4_K: 256 values in 8 sub-blocks of 32, 6-bit scales and mins under f16 super-scales (144 bytes).</summary>
    public static void DequantizeQ4_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int count = Blocks(blocks, values, 256, 144);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 144, 144);
            float d = Half(block, 0), dmin = Half(block, 2);
            ReadOnlySpan<byte> scales = block.Slice(4, 12), q = block.Slice(16, 128);
            Span<float> y = values.Slice(b * 256, 256);
            for (int chunk = 0, s = 0; chunk < 4; chunk++, s += 2)
            {
                (int sc1, int m1) = ScaleMinK4(s, scales);
                (int sc2, int m2) = ScaleMinK4(s + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                for (int l = 0; l < 32; l++)
                    y[chunk * 64 + l] = d1 * (q[chunk * 32 + l] & 0xF) - min1;
                for (int l = 0; l < 32; l++)
                    y[chunk * 64 + 32 + l] = d2 * (q[chunk * 32 + l] >> 4) - min2;
            }
        }
    }

    /// <summary>Q5_K: Q4_K's layout with a fifth bit per value in 32 more bytes (176 bytes).</summary>
    public static void DequantizeQ5_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int count = Blocks(blocks, values, 256, 176);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 176, 176);
            float d = Half(block, 0), dmin = Half(block, 2);
            ReadOnlySpan<byte> scales = block.Slice(4, 12), high = block.Slice(16, 32), q = block.Slice(48, 128);
            Span<float> y = values.Slice(b * 256, 256);
            for (int chunk = 0, s = 0; chunk < 4; chunk++, s += 2)
            {
                (int sc1, int m1) = ScaleMinK4(s, scales);
                (int sc2, int m2) = ScaleMinK4(s + 1, scales);
                float d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2;
                int bit1 = 1 << (2 * chunk), bit2 = 2 << (2 * chunk);
                for (int l = 0; l < 32; l++)
                    y[chunk * 64 + l] = d1 * ((q[chunk * 32 + l] & 0xF) + ((high[l] & bit1) != 0 ? 16 : 0)) - min1;
                for (int l = 0; l < 32; l++)
                    y[chunk * 64 + 32 + l] = d2 * ((q[chunk * 32 + l] >> 4) + ((high[l] & bit2) != 0 ? 16 : 0)) - min2;
            }
        }
    }

    /// <summary>Q6_K: 256 values of 6 bits (4 low in 128 bytes, 2 high in 64) with 16 signed 8-bit scales under an f16 scale (210 bytes).</summary>
    public static void DequantizeQ6_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int count = Blocks(blocks, values, 256, 210);
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 210, 210);
            ReadOnlySpan<byte> low = block[..128], high = block.Slice(128, 64), scales = block.Slice(192, 16);
            float d = Half(block, 208);
            Span<float> y = values.Slice(b * 256, 256);
            for (int half = 0; half < 2; half++)
            {
                ReadOnlySpan<byte> ql = low.Slice(half * 64, 64), qh = high.Slice(half * 32, 32);
                ReadOnlySpan<byte> sc = scales.Slice(half * 8, 8);
                Span<float> out128 = y.Slice(half * 128, 128);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    out128[l] = d * (sbyte)sc[s] * q1;
                    out128[l + 32] = d * (sbyte)sc[s + 2] * q2;
                    out128[l + 64] = d * (sbyte)sc[s + 4] * q3;
                    out128[l + 96] = d * (sbyte)sc[s + 6] * q4;
                }
            }
        }
    }

    // The 6-bit scale and min of sub-block j, packed in 12 bytes as llama.cpp's get_scale_min_k4 reads them.
    private static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    private static float Half(ReadOnlySpan<byte> block, int offset) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(block[offset..]));

    private static int Blocks(ReadOnlySpan<byte> blocks, Span<float> values, int blockValues, int blockBytes) => Blocks(blocks, values.Length, blockValues, blockBytes);

    private static int Blocks(ReadOnlySpan<byte> blocks, int values, int blockValues, int blockBytes)
    {
        if (values % blockValues != 0)
            throw new ArgumentException($"{values} values are not whole blocks of {blockValues}.", nameof(values));
        int count = values / blockValues;
        if (blocks.Length != count * blockBytes)
            throw new ArgumentException($"{count} blocks take {count * blockBytes} bytes, not {blocks.Length}.", nameof(blocks));
        return count;
    }
}
