using System.Buffers.Binary;
using Ftransformers.Kernels;

namespace Ftransformers.Quantization;

/// <summary>
/// Quantizes F32 values to GGUF's Q4_K blocks (<see cref="KBlockLayout"/>). Each sub-block of 32 gets the scale and min
/// (min ≤ 0, as Q4_K stores −min) of the best of a few narrowed ranges with a least-squares refit, as
/// <see cref="Int4Quantizer"/> fits its groups; the block's eight scales and mins are then rounded to 6 bits under an
/// F16 d and dmin (the largest over 63), and the codes are assigned on that stored grid. Not llama.cpp's quantizer
/// (<c>make_qkx2_quants</c>): the same format, so llama.cpp reads these blocks as its own.
/// </summary>
public static class Q4KQuantizer
{
    private const int Sub = KBlockLayout.Q4KSubBlockValues, Subs = KBlockLayout.BlockValues / Sub;
    private static readonly float[] RangeFractions = [1f, 0.95f, 0.9f, 0.85f, 0.8f];

    /// <summary>A row-major [rows, cols] matrix (cols a multiple of 256) as Q4_K blocks, row after row.</summary>
    public static byte[] Quantize(ReadOnlySpan<float> weights, int rows, int cols)
    {
        var blocks = new byte[KBlockLayout.BytesOf(KBlockFormat.Q4K, rows, cols)];
        Quantize(weights, rows, cols, blocks);
        return blocks;
    }

    /// <summary>A row-major [rows, cols] matrix (cols a multiple of 256) as Q4_K blocks into <paramref name="blocks"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> weights, int rows, int cols, Span<byte> blocks)
    {
        if (cols % KBlockLayout.BlockValues != 0)
            throw new ArgumentException($"Q4_K rows hold whole blocks of {KBlockLayout.BlockValues} values; {cols} columns do not.", nameof(cols));
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {rows} x {cols} values, got {weights.Length}.", nameof(weights));
        if (blocks.Length < KBlockLayout.BytesOf(KBlockFormat.Q4K, rows, cols))
            throw new ArgumentException($"{rows} x {cols} values take {KBlockLayout.BytesOf(KBlockFormat.Q4K, rows, cols)} bytes of Q4_K blocks; {blocks.Length} were given.", nameof(blocks));
        int count = weights.Length / KBlockLayout.BlockValues;
        Span<float> scales = stackalloc float[Subs], mins = stackalloc float[Subs];
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<float> x = weights.Slice(b * KBlockLayout.BlockValues, KBlockLayout.BlockValues);
            Span<byte> block = blocks.Slice(b * KBlockLayout.Q4KBlockBytes, KBlockLayout.Q4KBlockBytes);
            for (int j = 0; j < Subs; j++)
                (scales[j], mins[j]) = Fit(x.Slice(j * Sub, Sub));
            QuantizeBlock(x, scales, mins, block);
        }
    }

    // The block's 6-bit scales and mins under F16 super-scales, then each value's code on that grid.
    private static void QuantizeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, Span<byte> block)
    {
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < Subs; j++)
        {
            maxScale = MathF.Max(maxScale, scales[j]);
            maxMin = MathF.Max(maxMin, -mins[j]);
        }
        Half d = ToHalf(maxScale / 63), dmin = ToHalf(maxMin / 63);
        float df = (float)d, dminf = (float)dmin;
        Span<byte> sc = stackalloc byte[Subs], m = stackalloc byte[Subs];
        for (int j = 0; j < Subs; j++)
        {
            sc[j] = df > 0 ? (byte)Math.Clamp(MathF.Round(scales[j] / df), 0, 63) : (byte)0;
            m[j] = dminf > 0 ? (byte)Math.Clamp(MathF.Round(-mins[j] / dminf), 0, 63) : (byte)0;
        }
        BinaryPrimitives.WriteUInt16LittleEndian(block, BitConverter.HalfToUInt16Bits(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block[2..], BitConverter.HalfToUInt16Bits(dmin));
        // The packing get_scale_min_k4 reads: bytes 0-3 and 4-7 hold scale and min 0-3 with the top two bits of
        // scale and min 4-7 above them; bytes 8-11 hold the low nibbles of scale and min 4-7.
        for (int i = 0; i < 4; i++)
        {
            block[4 + i] = (byte)(sc[i] | ((sc[i + 4] >> 4) << 6));
            block[8 + i] = (byte)(m[i] | ((m[i + 4] >> 4) << 6));
            block[12 + i] = (byte)((sc[i + 4] & 0xF) | ((m[i + 4] & 0xF) << 4));
        }
        // In each 64 values, value l of the first sub-block is the low nibble of byte l, of the second the high one.
        Span<byte> codes = block[16..];
        for (int j = 0; j < Subs; j++)
        {
            float scale = df * sc[j], min = dminf * m[j];
            for (int l = 0; l < Sub; l++)
            {
                int q = scale > 0 ? (int)Math.Clamp(MathF.Round((x[j * Sub + l] + min) / scale), 0, 15) : 0;
                int at = 32 * (j / 2) + l;
                codes[at] = (j & 1) == 0 ? (byte)q : (byte)(codes[at] | (q << 4));
            }
        }
    }

    // Scale ≥ 0 and min ≤ 0 with w ≈ scale · q + min over codes 0..15: the narrowed range of least squared error.
    private static (float Scale, float Min) Fit(ReadOnlySpan<float> w)
    {
        float lo = 0, hi = float.MinValue;
        foreach (float v in w)
        {
            lo = MathF.Min(lo, v);
            hi = MathF.Max(hi, v);
        }
        if (hi <= lo)
            return (0, lo);
        Span<byte> trial = stackalloc byte[w.Length];
        float bestScale = (hi - lo) / 15, bestMin = lo, bestError = float.MaxValue;
        foreach (float fraction in RangeFractions)
        {
            float centre = (hi + lo) / 2, half = (hi - lo) / 2 * fraction;
            float scale = 2 * half / 15, min = MathF.Min(0, centre - half);
            for (int i = 0; i < w.Length; i++)
                trial[i] = (byte)Math.Clamp(MathF.Round((w[i] - min) / scale), 0, 15);
            (float fitScale, float fitMin) = Int4Quantizer.FitAffine(w, trial, scale, min);
            if (fitScale > 0 && fitMin <= 0)
                (scale, min) = (fitScale, fitMin);
            float error = Int4Quantizer.SquaredError(w, trial, scale, min);
            if (error < bestError)
                (bestError, bestScale, bestMin) = (error, scale, min);
        }
        return (bestScale, bestMin);
    }

    private static Half ToHalf(float value)
    {
        var half = (Half)value;
        if (!float.IsFinite(value))
            throw new ArgumentException("The weights hold a NaN or an infinity; Q4_K cannot hold them.");
        return Half.IsFinite(half) ? half : throw new ArgumentException($"A Q4_K super-scale of {value} is beyond F16's range (±65504): Q4_K cannot hold these weights.");
    }
}
