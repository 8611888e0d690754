using System.Buffers.Binary;
using Ftransformers.Kernels;

namespace Ftransformers.Quantization;

/// <summary>
/// Quantizes F32 values to GGUF's Q6_K blocks (<see cref="Q6KLayout"/>): each sub-block of 16 gets the scale that puts
/// its value of largest magnitude on code −32 (as llama.cpp's reference does), the block's sixteen scales are rounded
/// to signed 8 bits under an F16 d (the largest magnitude over 127), and the codes are assigned on that stored grid.
/// Not llama.cpp's quantizer (<c>make_qx_quants</c> also searches the scale): the same format, which llama.cpp reads as
/// its own.
/// </summary>
public static class Q6KQuantizer
{
    private const int Sub = Q6KLayout.SubBlockValues, Subs = Q6KLayout.BlockValues / Sub;

    /// <summary>A row-major [rows, cols] matrix (cols a multiple of 256) as Q6_K blocks, row after row.</summary>
    /// <exception cref="ArgumentException">The columns are not whole blocks, or the values are not rows × cols.</exception>
    public static byte[] Quantize(ReadOnlySpan<float> weights, int rows, int cols)
    {
        if (cols % Q6KLayout.BlockValues != 0)
            throw new ArgumentException($"Q6_K rows hold whole blocks of {Q6KLayout.BlockValues} values; {cols} columns do not.", nameof(cols));
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {rows} x {cols} values, got {weights.Length}.", nameof(weights));
        var blocks = new byte[Q6KLayout.BytesOf(rows, cols)];
        Span<float> scales = stackalloc float[Subs];
        for (int b = 0; b < weights.Length / Q6KLayout.BlockValues; b++)
        {
            ReadOnlySpan<float> x = weights.Slice(b * Q6KLayout.BlockValues, Q6KLayout.BlockValues);
            float maxScale = 0;
            for (int j = 0; j < Subs; j++)
            {
                float extreme = 0;
                foreach (float v in x.Slice(j * Sub, Sub))
                    extreme = MathF.Abs(v) > MathF.Abs(extreme) ? v : extreme;
                if (!float.IsFinite(extreme))
                    throw new ArgumentException($"Block {b} holds {extreme}; Q6_K quantizes finite values.", nameof(weights));
                scales[j] = extreme / -32;
                maxScale = MathF.Max(maxScale, MathF.Abs(scales[j]));
            }
            Span<byte> block = blocks.AsSpan(b * Q6KLayout.BlockBytes, Q6KLayout.BlockBytes);
            Half d = (Half)(maxScale / 127);
            BinaryPrimitives.WriteUInt16LittleEndian(block[208..], BitConverter.HalfToUInt16Bits(d));
            for (int j = 0; j < Subs; j++)
            {
                int scale = (float)d == 0 ? 0 : (int)Math.Clamp(MathF.Round(scales[j] / (float)d), -128, 127);
                block[192 + j] = (byte)(sbyte)scale;
                float step = (float)d * scale;
                for (int i = 0; i < Sub; i++)
                {
                    int value = j * Sub + i, code = step == 0 ? 32 : (int)Math.Clamp(MathF.Round(x[value] / step) + 32, 0, 63);
                    int half = value / 128, k = value % 128 / 32, l = value % 32;
                    block[64 * half + 32 * (k % 2) + l] |= (byte)((code & 15) << (4 * (k / 2)));
                    block[128 + 32 * half + l] |= (byte)((code >> 4) << (2 * k));
                }
            }
        }
        return blocks;
    }
}
