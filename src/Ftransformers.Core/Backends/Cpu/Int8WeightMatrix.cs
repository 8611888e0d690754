using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>W8A8: INT8 weights per output channel against activations quantized to INT8 per token.</summary>
internal sealed class Int8WeightMatrix(string name, Int8Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int8Weights Weights { get; } = weights;

    internal override unsafe RowStorage[] Storage() =>
    [
        new(AddressOf(Weights.Codes), Cols, 1, Rows),
        new(AddressOf(Weights.Scales), sizeof(float), 1, Rows),
    ];

    internal override unsafe WeightMatrix Relocated(nint[] starts) =>
        new Int8WeightMatrix(Name, new Int8Weights(Rows, Cols, (sbyte*)starts[0], (float*)starts[1]));


    protected internal override int ActivationBlockSize => Cols; // per token

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end) =>
        Int8Dot.Rows(Weights.Layout, start, end, p.Activations, new Span<float>(p.Y, p.Tokens * Rows));

    // The single-row paths (MLA absorption) keep F32 activations: the row is widened to F32, then vector math.
    public override float DotRow(int row, ReadOnlySpan<float> x)
    {
        Span<float> w = Cols <= 4096 ? stackalloc float[Cols] : new float[Cols];
        CopyRow(row, w);
        return TensorPrimitives.Dot(w, x);
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        TensorPrimitives.ConvertTruncating<sbyte, float>(Weights.Row(row), destination[..Cols]);
        TensorPrimitives.Multiply(destination[..Cols], Weights.Scale(row), destination[..Cols]);
    }
}
