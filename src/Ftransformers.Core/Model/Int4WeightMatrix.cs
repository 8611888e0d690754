using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>Grouped INT4 weights against activations quantized to INT8 in blocks of 32.</summary>
internal sealed class Int4WeightMatrix(string name, Int4Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int4Weights Weights { get; } = weights;

    protected override int MaxTokensPerPass => Int4Dot.MaxTokens;

    protected override void PrepareActivations(MatrixProduct product) => product.Activations.QuantizePerBlock(product.Input, product.Tokens, Cols);

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end) =>
        Int4Dot.Rows(Weights, start, end, p.Activations, new Span<float>(p.Y, p.Tokens * Rows));

    public override float DotRow(int row, ReadOnlySpan<float> x)
    {
        Span<float> w = stackalloc float[Cols];
        Weights.DequantizeRow(row, w);
        return TensorPrimitives.Dot(w, x);
    }

    public override void CopyRow(int row, Span<float> destination) => Weights.DequantizeRow(row, destination);
}
