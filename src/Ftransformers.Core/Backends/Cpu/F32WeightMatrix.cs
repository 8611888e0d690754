using System.Numerics.Tensors;
using Ftransformers.Memory;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>F32 weights, mapped in place or decoded into a pinned array.</summary>
internal sealed unsafe class F32WeightMatrix : WeightMatrix
{
    private readonly float* _data;
    private readonly PinnedArray<float>? _owned;

    public F32WeightMatrix(string name, int rows, int cols, float* mapped) : base(name, rows, cols) => _data = mapped;

    public F32WeightMatrix(string name, int rows, int cols, ReadOnlySpan<float> values) : base(name, rows, cols)
    {
        if (values.Length != (long)rows * cols)
            throw new ArgumentException($"{name}: expected {rows}x{cols} values, got {values.Length}.", nameof(values));
        _owned = PinnedArray<float>.CopyOf(values);
        _data = _owned.Pointer;
    }

    internal override RowStorage[] Storage() => [new((nint)_data, (long)Cols * sizeof(float), 1, Rows)];

    internal override WeightMatrix Relocated(nint[] starts) => new F32WeightMatrix(Name, Rows, Cols, (float*)starts[0]);

    private ReadOnlySpan<float> Row(int row) => new(_data + (long)row * Cols, Cols);

    public override float DotRow(int row, ReadOnlySpan<float> x) => TensorPrimitives.Dot(Row(row), x);

    public override void CopyRow(int row, Span<float> destination) => Row(row).CopyTo(destination);
}
