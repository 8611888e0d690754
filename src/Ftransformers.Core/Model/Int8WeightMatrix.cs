using Ftransformers.Kernels;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>W8A8: INT8 weights per output channel against activations quantized to INT8 per token.</summary>
internal sealed class Int8WeightMatrix(string name, Int8Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int8Weights Weights { get; } = weights;

    public override long ByteSize => Weights.ByteSize;

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

    // The single-row paths (MLA absorption) keep F32 activations: weights are dequantized on the fly.
    public override float DotRow(int row, ReadOnlySpan<float> x)
    {
        ReadOnlySpan<sbyte> codes = Weights.Row(row);
        float sum = 0;
        for (int i = 0; i < codes.Length; i++)
            sum += codes[i] * x[i];
        return sum * Weights.Scale(row);
    }

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator)
    {
        ReadOnlySpan<sbyte> codes = Weights.Row(row);
        float s = scale * Weights.Scale(row);
        for (int i = 0; i < codes.Length; i++)
            accumulator[i] += codes[i] * s;
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        ReadOnlySpan<sbyte> codes = Weights.Row(row);
        for (int i = 0; i < codes.Length; i++)
            destination[i] = codes[i] * Weights.Scale(row);
    }
}
