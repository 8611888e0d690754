using System.Numerics.Tensors;
using Ftransformers.Kernels;

namespace Ftransformers.Model;

/// <summary>
/// A row-major [rows, cols] weight matrix (a linear layer y = W x) in its stored precision; rows are read in
/// place from the checkpoint's mapping where the dtype allows it.
/// </summary>
internal abstract class WeightMatrix(string name, int rows, int cols)
{
    /// <summary>The tensor name, for messages.</summary>
    public string Name { get; } = name;

    /// <summary>Output features.</summary>
    public int Rows { get; } = rows;

    /// <summary>Input features.</summary>
    public int Cols { get; } = cols;

    /// <summary>Dot product of row <paramref name="row"/> with <paramref name="x"/>.</summary>
    public abstract float DotRow(int row, ReadOnlySpan<float> x);

    /// <summary>accumulator += scale * row <paramref name="row"/>.</summary>
    public abstract void MultiplyAddRow(int row, float scale, Span<float> accumulator);

    /// <summary>Copies row <paramref name="row"/> as F32 (embedding lookup).</summary>
    public abstract void CopyRow(int row, Span<float> destination);

    /// <summary>y[t] = W x[t] for <paramref name="tokens"/> row-major inputs of width <see cref="Cols"/>.</summary>
    public void Multiply(ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        if (x.Length < tokens * Cols || y.Length < tokens * Rows)
            throw new ArgumentException($"{Name}: {tokens} tokens need {tokens * Cols} inputs and {tokens * Rows} outputs (got {x.Length}, {y.Length}).");
        // Row-outer order: each weight row is read once for all tokens.
        for (int r = 0; r < Rows; r++)
            for (int t = 0; t < tokens; t++)
                y[t * Rows + r] = DotRow(r, x.Slice(t * Cols, Cols));
    }

    /// <summary>y = W[rowStart..rowStart+count] x: a slice of the outputs for one token.</summary>
    public void MultiplyRows(int rowStart, int count, ReadOnlySpan<float> x, Span<float> y)
    {
        for (int r = 0; r < count; r++)
            y[r] = DotRow(rowStart + r, x);
    }

    /// <summary>y = W[rowStart..rowStart+count]^T x: the transposed product over a slice of rows.</summary>
    public void MultiplyTransposedRows(int rowStart, int count, ReadOnlySpan<float> x, Span<float> y)
    {
        y[..Cols].Clear();
        for (int r = 0; r < count; r++)
            MultiplyAddRow(rowStart + r, x[r], y);
    }
}

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

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator) => TensorPrimitives.MultiplyAdd(Row(row), scale, accumulator, accumulator);

    public override void CopyRow(int row, Span<float> destination) => Row(row).CopyTo(destination);
}

/// <summary>BF16 weights read in place from the mapping and widened on the fly.</summary>
internal sealed unsafe class Bf16WeightMatrix(string name, int rows, int cols, ushort* mapped) : WeightMatrix(name, rows, cols)
{
    private ReadOnlySpan<ushort> Row(int row) => new(mapped + (long)row * Cols, Cols);

    public override float DotRow(int row, ReadOnlySpan<float> x) => BFloat16.Dot(Row(row), x);

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator) => BFloat16.MultiplyAdd(Row(row), scale, accumulator);

    public override void CopyRow(int row, Span<float> destination) => BFloat16.ToSingle(Row(row), destination);
}
