using Ftransformers.Memory;

namespace Ftransformers.Quantization;

/// <summary>
/// Quantizes F32 weights to INT8 with one scale per output row: round-to-nearest against the row's largest
/// magnitude, then the least-squares scale for the chosen codes (never a larger squared error).
/// </summary>
public static class Int8Quantizer
{
    /// <summary>Quantizes a row-major [rows, cols] matrix.</summary>
    public static Int8Weights Quantize(ReadOnlySpan<float> weights, int rows, int cols)
    {
        if (weights.Length != (long)rows * cols)
            throw new ArgumentException($"Expected {rows}x{cols} weights, got {weights.Length}.", nameof(weights));
        var codes = PinnedArray<sbyte>.Zeroed(rows * cols);
        var scales = PinnedArray<float>.Zeroed(rows);
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row = weights.Slice(r * cols, cols);
            Span<sbyte> q = codes.Span.Slice(r * cols, cols);
            float absMax = MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(row)); // MaxMagnitude keeps the sign
            float inverse = 127f / absMax;
            if (!float.IsFinite(inverse))
                continue; // all zero, or too small for a finite scale: codes stay 0

            Kernels.Int8Codes.Quantize(row, inverse, q);
            double wq = 0, qq = 0;
            for (int i = 0; i < cols; i++)
            {
                wq += row[i] * q[i];
                qq += q[i] * q[i];
            }
            scales.Span[r] = (float)(wq / qq);
        }
        return Int8Weights.FromOwned(rows, cols, codes, scales);
    }
}
