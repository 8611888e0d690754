using System.Buffers.Binary;
using Ftransformers.Kernels;

namespace Ftransformers.Quantization;

/// <summary>
/// Quantizes F32 values to GGUF's Q4_K blocks, or Q5_K's (a fifth bit a code), as <see cref="KBlockLayout"/> describes
/// them. Each sub-block of 32 gets the scale and min
/// (min ≤ 0, as Q4_K stores −min) of the best of a few narrowed ranges with a least-squares refit, as
/// <see cref="Int4Quantizer"/> fits its groups; the block's eight scales and mins are then rounded to 6 bits under an
/// F16 d and dmin (the largest over 63), and the codes are assigned on that stored grid. Not llama.cpp's quantizer
/// (<c>make_qkx2_quants</c>): the same format, so llama.cpp reads these blocks as its own.
/// </summary>
public static class Q4KQuantizer
{
    private const int Sub = KBlockLayout.Q4KSubBlockValues, Subs = KBlockLayout.BlockValues / Sub;
    private static readonly float[] RangeFractions = [1f, 0.95f, 0.9f, 0.85f, 0.8f];

    /// <summary>A row-major [rows, cols] matrix (cols a multiple of 256) as Q4_K (or Q5_K) blocks, row after row.</summary>
    public static byte[] Quantize(ReadOnlySpan<float> weights, int rows, int cols, KBlockFormat format = KBlockFormat.Q4K)
    {
        var blocks = new byte[KBlockLayout.BytesOf(format, rows, cols)];
        Quantize(weights, rows, cols, blocks, format);
        return blocks;
    }

    /// <summary>A row-major [rows, cols] matrix (cols a multiple of 256) as Q4_K (or Q5_K) blocks into <paramref name="blocks"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> weights, int rows, int cols, Span<byte> blocks, KBlockFormat format = KBlockFormat.Q4K)
    {
        if (format is not (KBlockFormat.Q4K or KBlockFormat.Q5K))
            throw new ArgumentException($"This quantizer writes Q4_K and Q5_K blocks, not {KBlockLayout.NameOf(format)}.", nameof(format));
        string name = KBlockLayout.NameOf(format);
        if (cols % KBlockLayout.BlockValues != 0)
            throw new ArgumentException($"{name} rows hold whole blocks of {KBlockLayout.BlockValues} values; {cols} columns do not.", nameof(cols));
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {rows} x {cols} values, got {weights.Length}.", nameof(weights));
        if (blocks.Length < KBlockLayout.BytesOf(format, rows, cols))
            throw new ArgumentException($"{rows} x {cols} values take {KBlockLayout.BytesOf(format, rows, cols)} bytes of {name} blocks; {blocks.Length} were given.", nameof(blocks));
        int count = weights.Length / KBlockLayout.BlockValues, blockBytes = KBlockLayout.BlockBytesOf(format), top = format == KBlockFormat.Q5K ? 31 : 15;
        Span<float> scales = stackalloc float[Subs], mins = stackalloc float[Subs];
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<float> x = weights.Slice(b * KBlockLayout.BlockValues, KBlockLayout.BlockValues);
            Span<byte> block = blocks.Slice(b * blockBytes, blockBytes);
            for (int j = 0; j < Subs; j++)
                (scales[j], mins[j]) = Fit(x.Slice(j * Sub, Sub), top);
            QuantizeBlock(x, scales, mins, block, top);
        }
    }

    // The block's 6-bit scales and mins under F16 super-scales, then each value's code 0..top on that grid.
    private static void QuantizeBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> scales, ReadOnlySpan<float> mins, Span<byte> block, int top)
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
        // In each 64 values, value l of the first sub-block is the low nibble of byte l, of the second the high one;
        // Q5_K puts those nibbles after a plane whose byte l holds value l's fifth bit of sub-block j in bit j.
        bool fifth = top > 15;
        Span<byte> codes = block[(fifth ? 48 : 16)..], plane = block.Slice(16, 32);
        if (fifth)
            plane.Clear();
        for (int j = 0; j < Subs; j++)
        {
            float scale = df * sc[j], min = dminf * m[j];
            for (int l = 0; l < Sub; l++)
            {
                int q = scale > 0 ? (int)Math.Clamp(MathF.Round((x[j * Sub + l] + min) / scale), 0, top) : 0;
                int at = 32 * (j / 2) + l;
                codes[at] = (j & 1) == 0 ? (byte)(q & 15) : (byte)(codes[at] | ((q & 15) << 4));
                if (fifth)
                    plane[l] |= (byte)((q >> 4) << j);
            }
        }
    }

    // Scale ≥ 0 and min ≤ 0 with w ≈ scale · q + min over codes 0..top: the narrowed range of least squared error.
    private static (float Scale, float Min) Fit(ReadOnlySpan<float> w, int top)
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
        float bestScale = (hi - lo) / top, bestMin = lo, bestError = float.MaxValue;
        foreach (float fraction in RangeFractions)
        {
            float centre = (hi + lo) / 2, half = (hi - lo) / 2 * fraction;
            float scale = 2 * half / top, min = MathF.Min(0, centre - half);
            for (int i = 0; i < w.Length; i++)
                trial[i] = (byte)Math.Clamp(MathF.Round((w[i] - min) / scale), 0, top);
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
