using System.Numerics.Tensors;

namespace Ftransformers.Model;

/// <summary>F32 weights, mapped in place or decoded into a pinned array.</summary>
internal sealed unsafe class F32WeightMatrix : WeightMatrix
{
    private readonly float* _data;
    private readonly float[]? _owned;

    public F32WeightMatrix(string name, int rows, int cols, float* mapped) : base(name, rows, cols) => _data = mapped;

    public F32WeightMatrix(string name, int rows, int cols, ReadOnlySpan<float> values) : base(name, rows, cols)
    {
        _owned = GC.AllocateUninitializedArray<float>(checked(rows * cols), pinned: true);
        values.CopyTo(_owned);
        _data = (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _owned[0]);
    }

    private ReadOnlySpan<float> Row(int row) => new(_data + (long)row * Cols, Cols);

    public override float DotRow(int row, ReadOnlySpan<float> x) => TensorPrimitives.Dot(Row(row), x);

    public override void CopyRow(int row, Span<float> destination) => Row(row).CopyTo(destination);
}
