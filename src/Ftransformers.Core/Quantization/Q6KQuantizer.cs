using System.Buffers.Binary;
using Ftransformers.Kernels;

namespace Ftransformers.Quantization;

/// <summary>
/// Quantizes F32 values to GGUF's Q6_K blocks (<see cref="KBlockLayout"/>): each sub-block of 16 gets the scale that puts
/// its value of largest magnitude on code −32 (as llama.cpp's reference does) or a little inside it, whichever rounds the
/// sub-block with the least squared error; the block's sixteen scales are rounded
/// to signed 8 bits under an F16 d (the largest magnitude over 127), and the codes are assigned on that stored grid.
/// Not llama.cpp's quantizer (<c>make_qx_quants</c> searches the scale more widely): the same format, which llama.cpp reads as
/// its own.
/// </summary>
public static class Q6KQuantizer
{
    private const int Sub = KBlockLayout.Q6KSubBlockValues, Subs = KBlockLayout.BlockValues / Sub;

    /// <summary>A row-major [rows, cols] matrix (cols a multiple of 256) as Q6_K blocks, row after row.</summary>
    /// <exception cref="ArgumentException">The columns are not whole blocks, or the values are not rows × cols.</exception>
    public static byte[] Quantize(ReadOnlySpan<float> weights, int rows, int cols)
    {
        if (cols % KBlockLayout.BlockValues != 0)
            throw new ArgumentException($"Q6_K rows hold whole blocks of {KBlockLayout.BlockValues} values; {cols} columns do not.", nameof(cols));
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {rows} x {cols} values, got {weights.Length}.", nameof(weights));
        var blocks = new byte[KBlockLayout.BytesOf(KBlockFormat.Q6K, rows, cols)];
        Span<float> scales = stackalloc float[Subs];
        for (int b = 0; b < weights.Length / KBlockLayout.BlockValues; b++)
        {
            ReadOnlySpan<float> x = weights.Slice(b * KBlockLayout.BlockValues, KBlockLayout.BlockValues);
            float maxScale = 0;
            for (int j = 0; j < Subs; j++)
            {
                scales[j] = Fit(x.Slice(j * Sub, Sub), b);
                maxScale = MathF.Max(maxScale, MathF.Abs(scales[j]));
            }
            Span<byte> block = blocks.AsSpan(b * KBlockLayout.Q6KBlockBytes, KBlockLayout.Q6KBlockBytes);
            Half d = (Half)(maxScale / 127);
            if (!Half.IsFinite(d))
                throw new ArgumentException($"Block {b}: a super-scale of {maxScale / 127} is beyond F16's range (±65504); Q6_K cannot hold these weights.", nameof(weights));
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

    // A sub-block's scale: its value of largest magnitude over −32 (where llama.cpp's reference puts it), or over a
    // slightly smaller code where that rounds the rest closer (least squared error).
    private static float Fit(ReadOnlySpan<float> x, int block)
    {
        float extreme = 0;
        foreach (float v in x)
        {
            if (!float.IsFinite(v))
                throw new ArgumentException($"Block {block} holds {v}; Q6_K quantizes finite values.", nameof(x));
            extreme = MathF.Abs(v) > MathF.Abs(extreme) ? v : extreme;
        }
        float best = extreme / -32, bestError = float.PositiveInfinity;
        for (float code = 32; code >= 28 && extreme != 0; code -= 0.5f)
        {
            float scale = extreme / -code, error = 0;
            foreach (float v in x)
            {
                float e = v - scale * Math.Clamp(MathF.Round(v / scale), -32, 31);
                error += e * e;
            }
            if (error < bestError)
                (best, bestError) = (scale, error);
        }
        return best;
    }
}
