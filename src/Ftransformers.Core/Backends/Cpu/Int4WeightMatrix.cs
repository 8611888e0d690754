using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// Grouped INT4 weights against activations quantized to INT8 in blocks of 32. Where a row-group kernel runs (x86),
/// group-32 weights are repacked at load into <see cref="Int4RowGroups"/> (the row-major copy is then dropped, or a
/// mapped checkpoint's pages left unused); elsewhere, and for other group sizes, they stay row-major.
/// </summary>
internal sealed class Int4WeightMatrix : WeightMatrix
{
    private readonly Int4Weights? _rowMajor;
    private readonly Int4RowGroups? _rowGroups;

    public Int4WeightMatrix(string name, Int4Weights weights) : base(name, weights.Rows, weights.Cols)
    {
        if (Int4RowGroupKernel.IsSupported && Int4RowGroups.Suits(weights))
            _rowGroups = Int4RowGroups.From(weights);
        else
            _rowMajor = weights;
    }

    /// <summary>A matrix over row groups as they are (mapped from a converted checkpoint, or relocated): no repack.</summary>
    public Int4WeightMatrix(string name, Int4RowGroups rowGroups) : base(name, rowGroups.Rows, rowGroups.Cols)
    {
        if (!Int4RowGroupKernel.IsSupported)
            throw new PlatformNotSupportedException($"{name}: this CPU has no row-group INT4 kernel; repack the rows with Int4RowGroups.ToWeights.");
        _rowGroups = rowGroups;
    }

    internal override unsafe RowStorage[] Storage()
    {
        if (_rowGroups is { } g)
        {
            long parameters = (long)g.GroupParameters * sizeof(ushort);
            RowStorage[] groups = [new((nint)g.PackedPointer, g.GroupBytes, Int4RowGroups.RowsPerGroup, g.Groups), new((nint)g.ScalesPointer, parameters, Int4RowGroups.RowsPerGroup, g.Groups)];
            return g.Symmetric ? groups : [.. groups, new((nint)g.MinsPointer, parameters, Int4RowGroups.RowsPerGroup, g.Groups)];
        }
        Int4Weights w = _rowMajor!;
        long perRow = (long)w.GroupsPerRow * sizeof(ushort);
        RowStorage[] rows = [new(AddressOf(w.Packed), Cols / 2, 1, Rows), new(AddressOf(w.Scales), perRow, 1, Rows)];
        return w.Format.Symmetric ? rows : [.. rows, new(AddressOf(w.Mins), perRow, 1, Rows)];
    }

    internal override unsafe WeightMatrix Relocated(nint[] starts)
    {
        if (_rowGroups is { } g)
            return new Int4WeightMatrix(Name, new Int4RowGroups(Rows, Cols, g.Symmetric, (byte*)starts[0], (Half*)starts[1], g.Symmetric ? null : (Half*)starts[2], owner: null));
        Int4Weights w = _rowMajor!;
        return new Int4WeightMatrix(Name, new Int4Weights(Rows, Cols, w.Format, (byte*)starts[0], (Half*)starts[1], w.Format.Symmetric ? null : (Half*)starts[2]));
    }


    /// <summary>Whether the weights were repacked into row groups (for tests and diagnostics).</summary>
    internal bool UsesRowGroups => _rowGroups != null;

    protected internal override int RowAlignment => _rowGroups != null ? Int4RowGroupKernel.RowsPerPass : 1;

    protected internal override int MaxTokensPerPass => Int4Dot.MaxTokens;

    protected internal override int ActivationBlockSize => Int4Layout.BlockSize;

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end)
    {
        var y = new Span<float>(p.Y, p.Tokens * Rows);
        if (_rowGroups != null)
            Int4RowGroupKernel.Rows(_rowGroups.Layout, start, end, p.Activations, y);
        else
            Int4Dot.Rows(_rowMajor!.Layout, start, end, p.Activations, y);
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        if (_rowGroups != null)
            _rowGroups.DequantizeRow(row, destination);
        else
            _rowMajor!.DequantizeRow(row, destination);
    }
}
