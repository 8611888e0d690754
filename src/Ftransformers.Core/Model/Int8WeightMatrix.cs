using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>W8A8: INT8 weights per output channel against activations quantized to INT8 per token.</summary>
internal sealed class Int8WeightMatrix(string name, Int8Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int8Weights Weights { get; } = weights;

    protected override void PrepareActivations(MatrixProduct product) => product.Activations.QuantizePerToken(product.Input, product.Tokens, Cols);

    protected internal override void MultiplyRows(MatrixProduct p, int start, int end)
    {
        Int8Activations a = p.Activations;
        for (int r = start; r < end; r++)
        {
            ReadOnlySpan<sbyte> row = Weights.Row(r);
            float scale = Weights.Scale(r);
            for (int t = 0; t < p.Tokens; t++)
                unsafe { p.Y[(long)t * Rows + r] = scale * a.Scales(t)[0] * Int8Dot.Dot(row, a.Values(t)); }
        }
    }

    // The single-row paths (MLA absorption) keep F32 activations: the row is widened to F32, then vector math.
    public override float DotRow(int row, ReadOnlySpan<float> x)
    {
        Span<float> w = Cols <= 4096 ? stackalloc float[Cols] : new float[Cols];
        CopyRow(row, w);
        return TensorPrimitives.Dot(w, x);
    }

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator)
    {
        Span<float> w = Cols <= 4096 ? stackalloc float[Cols] : new float[Cols];
        CopyRow(row, w);
        TensorPrimitives.MultiplyAdd(w, scale, accumulator, accumulator);
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        TensorPrimitives.ConvertTruncating<sbyte, float>(Weights.Row(row), destination[..Cols]);
        TensorPrimitives.Multiply(destination[..Cols], Weights.Scale(row), destination[..Cols]);
    }
}
