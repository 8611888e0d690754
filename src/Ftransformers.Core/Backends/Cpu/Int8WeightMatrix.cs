using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// W8A8: INT8 weights per output channel against activations quantized to INT8 per token; or, for weights with a scale
/// per block of 32 (GGUF's Q8_0), against activations quantized per block of 32 as llama.cpp does.
/// </summary>
internal sealed class Int8WeightMatrix(string name, Int8Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int8Weights Weights { get; } = weights;

    internal override unsafe RowStorage[] Storage() =>
    [
        new(AddressOf(Weights.Codes), Cols, 1, Rows),
        new(AddressOf(Weights.Scales), (long)Weights.BlocksPerRow * sizeof(float), 1, Rows),
    ];

    internal override unsafe WeightMatrix Relocated(nint[] starts) =>
        new Int8WeightMatrix(Name, new Int8Weights(Rows, Cols, (sbyte*)starts[0], (float*)starts[1], blockSize: Weights.BlockSize));

    protected internal override int ActivationBlockSize => Weights.BlockSize; // per token, or per block as the weights

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end)
    {
        var y = new Span<float>(p.Y, p.Tokens * Rows);
        if (Weights.BlockSize == Cols)
            Int8Dot.Rows(Weights.Layout, start, end, p.Activations, y);
        else
            Int8BlockRows.Rows(Weights.Layout, start, end, p.Activations, y);
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        TensorPrimitives.ConvertTruncating<sbyte, float>(Weights.Row(row), destination[..Cols]);
        ReadOnlySpan<float> scales = Weights.RowScales(row);
        int block = Weights.BlockSize;
        for (int b = 0; b < scales.Length; b++)
            TensorPrimitives.Multiply(destination.Slice(b * block, block), scales[b], destination.Slice(b * block, block));
    }
}
