using Ftransformers.Memory;

namespace Ftransformers.Quantization;

/// <summary>
/// Quantizes F32 weights to grouped INT4. Each group starts from round-to-nearest over its range, then tries a
/// few narrower ranges and refits scale (and min) by least squares for the chosen codes, keeping whichever
/// gives the smallest squared error: never worse than round-to-nearest. Scales and mins are rounded to F16, the
/// stored precision, before the error is measured.
/// </summary>
public static class Int4Quantizer
{
    // Fractions of the full range tried as the starting grid (1 = plain round-to-nearest).
    private static readonly float[] RangeFractions = [1f, 0.95f, 0.9f, 0.85f, 0.8f, 0.75f];

    /// <summary>Quantizes a row-major [rows, cols] matrix.</summary>
    public static Int4Weights Quantize(ReadOnlySpan<float> weights, int rows, int cols, Int4Format format, bool search = true)
    {
        format.Validate();
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {rows}x{cols} weights, got {weights.Length}.", nameof(weights));
        if (cols % format.GroupSize != 0)
            throw new ArgumentException($"Columns ({cols}) must be a multiple of the group size ({format.GroupSize}).", nameof(cols));
        int groups = rows * (cols / format.GroupSize);
        var packed = PinnedArray<byte>.Zeroed(rows * cols / 2);
        var scales = PinnedArray<Half>.Zeroed(groups);
        PinnedArray<Half>? mins = format.Symmetric ? null : PinnedArray<Half>.Zeroed(groups);
        Span<byte> codes = stackalloc byte[format.GroupSize];
        for (int g = 0; g < groups; g++)
        {
            ReadOnlySpan<float> group = weights.Slice(g * format.GroupSize, format.GroupSize);
            (float scale, float min) = format.Symmetric ? QuantizeSymmetric(group, codes, search) : QuantizeAsymmetric(group, codes, search);
            scales.Span[g] = (Half)RoundToHalf(scale);
            if (mins != null)
                mins.Span[g] = (Half)RoundToHalf(min);
            Pack(codes, packed.Span.Slice(g * format.GroupSize / 2, format.GroupSize / 2));
        }
        return Int4Weights.FromOwned(rows, cols, format, packed, scales, mins);
    }

    // The stored precision of scales and mins; a value beyond F16's range cannot be stored.
    private static float RoundToHalf(float value)
    {
        float rounded = (float)(Half)value;
        return float.IsFinite(rounded) ? rounded : throw new ArgumentException($"A scale or min of {value} is beyond F16's range (±65504): INT4 cannot hold these weights.");
    }

    // Weight j and j + 16 of each 32-block share byte j.
    private static void Pack(ReadOnlySpan<byte> codes, Span<byte> destination)
    {
        for (int block = 0; block < codes.Length; block += Int4Weights.BlockSize)
            for (int j = 0; j < 16; j++)
                destination[block / 2 + j] = (byte)(codes[block + j] | (codes[block + j + 16] << 4));
    }

    private static (float Scale, float Min) QuantizeAsymmetric(ReadOnlySpan<float> w, Span<byte> codes, bool search)
    {
        float lo = float.MaxValue, hi = float.MinValue;
        foreach (float v in w)
        {
            lo = MathF.Min(lo, v);
            hi = MathF.Max(hi, v);
        }
        if (hi == lo)
        {
            codes.Clear();
            return (0, lo);
        }
        Span<byte> trial = stackalloc byte[w.Length];
        float bestScale = 0, bestMin = 0, bestError = float.MaxValue;
        foreach (float fraction in search ? RangeFractions : RangeFractions.AsSpan(0, 1))
        {
            // Shrink the range around its centre, assign codes on the stored (F16) grid, then refit scale and min to
            // those codes.
            float centre = (hi + lo) / 2, half = (hi - lo) / 2 * fraction;
            float scale = RoundToHalf(2 * half / 15), min = RoundToHalf(centre - half);
            if (scale == 0)
                break; // a range below F16's resolution: the constant fallback below
            for (int i = 0; i < w.Length; i++)
                trial[i] = (byte)Math.Clamp(MathF.Round((w[i] - min) / scale), 0, 15);
            if (search)
                (scale, min) = FitAffine(w, trial, scale, min);
            (scale, min) = (RoundToHalf(scale), RoundToHalf(min));
            float error = SquaredError(w, trial, scale, min);
            if (error < bestError)
            {
                (bestError, bestScale, bestMin) = (error, scale, min);
                trial.CopyTo(codes);
            }
        }
        if (bestError == float.MaxValue)
        {
            codes.Clear();
            return (0, (hi + lo) / 2);
        }
        return (bestScale, bestMin);
    }

    private static (float Scale, float Min) QuantizeSymmetric(ReadOnlySpan<float> w, Span<byte> codes, bool search)
    {
        float absMax = 0, signedMax = 0;
        foreach (float v in w)
            if (MathF.Abs(v) > absMax)
                (absMax, signedMax) = (MathF.Abs(v), v);
        if (absMax == 0)
        {
            codes.Fill(8);
            return (0, 0);
        }
        Span<byte> trial = stackalloc byte[w.Length];
        float bestScale = 0, bestError = float.MaxValue;
        foreach (float fraction in search ? RangeFractions : RangeFractions.AsSpan(0, 1))
        {
            // The largest magnitude maps to -8 (the code range is -8..7), as llama.cpp's q4_0 does, on the F16 grid.
            float scale = RoundToHalf(-signedMax * fraction / 8);
            if (scale == 0)
                break; // magnitudes below F16's resolution: the zero fallback below
            for (int i = 0; i < w.Length; i++)
                trial[i] = (byte)(Math.Clamp(MathF.Round(w[i] / scale), -8, 7) + 8);
            if (search)
            {
                // Least-squares scale for fixed codes: sum(w q) / sum(q q).
                double wq = 0, qq = 0;
                for (int i = 0; i < w.Length; i++)
                {
                    int q = trial[i] - 8;
                    wq += w[i] * q;
                    qq += q * q;
                }
                if (qq > 0)
                    scale = (float)(wq / qq);
            }
            scale = RoundToHalf(scale);
            float error = SquaredError(w, trial, scale, -8 * scale);
            if (error < bestError)
            {
                (bestError, bestScale) = (error, scale);
                trial.CopyTo(codes);
            }
        }
        if (bestError == float.MaxValue)
        {
            codes.Fill(8);
            return (0, 0);
        }
        return (bestScale, 0);
    }

    // Least-squares fit of w ≈ scale * q + min for fixed codes; keeps the guess if the codes are all equal.
    internal static (float, float) FitAffine(ReadOnlySpan<float> w, ReadOnlySpan<byte> q, float scale, float min)
    {
        double n = w.Length, sq = 0, sqq = 0, sw = 0, sqw = 0;
        for (int i = 0; i < w.Length; i++)
        {
            sq += q[i];
            sqq += q[i] * q[i];
            sw += w[i];
            sqw += q[i] * w[i];
        }
        double det = n * sqq - sq * sq;
        if (det <= 0)
            return (scale, min);
        return ((float)((n * sqw - sq * sw) / det), (float)((sqq * sw - sq * sqw) / det));
    }

    internal static float SquaredError(ReadOnlySpan<float> w, ReadOnlySpan<byte> q, float scale, float min)
    {
        float error = 0;
        for (int i = 0; i < w.Length; i++)
        {
            float d = w[i] - (scale * q[i] + min);
            error += d * d;
        }
        return error;
    }
}
