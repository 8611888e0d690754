using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

/// <summary>The float64 reference for INT4 kernels: the product of their exact operands, with the bound the formats allow.</summary>
internal static class Int4Float64
{
    /// <summary>
    /// Asserts that <paramref name="actual"/> is row <paramref name="row"/> · token <paramref name="token"/> computed in
    /// float64 from the dequantized weights and dequantized activation codes, within float32 rounding of its terms
    /// (each block sum holds scale · code and min terms up to 8 · scale · |x|).
    /// </summary>
    public static void AssertRowDot(float actual, Int4Weights weights, int row, Int8Activations x, int token)
    {
        var w = new float[weights.Cols];
        weights.DequantizeRow(row, w);
        double expected = 0, magnitude = 0;
        for (int c = 0; c < weights.Cols; c++)
        {
            double xv = (double)x.Scales(token)[c / 32] * x.Values(token)[c];
            expected += w[c] * xv;
            magnitude += Math.Abs(w[c] * xv) + Math.Abs((double)weights.ScalesRow(row)[c / weights.Format.GroupSize] * 8 * xv);
        }
        Assert.That(actual, Is.EqualTo(expected).Within(weights.Cols * 1.2e-7 * magnitude + 1e-6), $"row {row}, token {token}");
    }
}
