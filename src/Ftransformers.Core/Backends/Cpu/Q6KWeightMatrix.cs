using Ftransformers.Kernels;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// GGUF's Q6_K blocks, read in place (mapped from a GGUF or a converted checkpoint), against activations quantized to
/// INT8 per block of 32 (<see cref="Q6KRows"/>).
/// </summary>
internal sealed class Q6KWeightMatrix(string name, Q6KLayout layout) : WeightMatrix(name, layout.Rows, layout.Cols)
{
    /// <summary>The blocks as the kernel reads them.</summary>
    public Q6KLayout Layout { get; } = layout;

    internal override unsafe RowStorage[] Storage() => [new((nint)Layout.Blocks, Layout.RowBytes, 1, Rows)];

    internal override unsafe WeightMatrix Relocated(nint[] starts) => new Q6KWeightMatrix(Name, new Q6KLayout((byte*)starts[0], Rows, Cols, owner: null));

    protected internal override int ActivationBlockSize => Int4Layout.BlockSize;

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end) =>
        Q6KRows.Rows(Layout, start, end, p.Activations, new Span<float>(p.Y, p.Tokens * Rows));

    public override void CopyRow(int row, Span<float> destination)
    {
        GgmlBlocks.DequantizeQ6_K(Layout.Row(row), destination[..Cols]);
        GC.KeepAlive(Layout.Owner);
    }
}
