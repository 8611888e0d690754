using System.Numerics.Tensors;

namespace Ftransformers.Kernels;

/// <summary>Root-mean-square layer normalization: y = x / sqrt(mean(x^2) + eps) * weight.</summary>
public static class RmsNorm
{
    /// <summary>Normalizes <paramref name="x"/> into <paramref name="destination"/> (may alias <paramref name="x"/>).</summary>
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float epsilon, Span<float> destination)
    {
        if (weight.Length != x.Length || destination.Length < x.Length)
            throw new ArgumentException($"RMSNorm over {x.Length} values needs a weight of that length (got {weight.Length}) and room for the result (got {destination.Length}).");
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        float inverse = 1f / MathF.Sqrt(meanSquare + epsilon);
        TensorPrimitives.Multiply(x, inverse, destination);
        TensorPrimitives.Multiply(destination[..x.Length], weight, destination);
    }

    /// <summary>Normalizes each row of a row-major [rows, width] block in place.</summary>
    public static void ApplyRows(Span<float> rows, int width, ReadOnlySpan<float> weight, float epsilon)
    {
        for (int offset = 0; offset < rows.Length; offset += width)
        {
            Span<float> row = rows.Slice(offset, width);
            Apply(row, weight, epsilon, row);
        }
    }
}
