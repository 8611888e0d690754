using Ftransformers.Kernels;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// GGUF's Q4_K blocks, read in place (mapped from a GGUF or a converted checkpoint, or quantized at load), against
/// activations quantized to INT8 per block of 32 (<see cref="Q4KRows"/>).
/// </summary>
internal sealed class Q4KWeightMatrix(string name, Q4KLayout layout) : WeightMatrix(name, layout.Rows, layout.Cols)
{
    /// <summary>The blocks as the kernel reads them.</summary>
    public Q4KLayout Layout { get; } = layout;

    /// <summary>Quantizes F32 rows to Q4_K; the matrix owns the blocks.</summary>
    public static unsafe Q4KWeightMatrix Quantize(string name, ReadOnlySpan<float> weights, int rows, int cols)
    {
        var blocks = Memory.PinnedArray<byte>.Uninitialized((int)Q4KLayout.BytesOf(rows, cols));
        try
        {
            Quantization.Q4KQuantizer.Quantize(weights, rows, cols, blocks.Span);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{name}: {e.Message}", e);
        }
        return new Q4KWeightMatrix(name, new Q4KLayout(blocks.Pointer, rows, cols, blocks));
    }

    internal override unsafe RowStorage[] Storage() => [new((nint)Layout.Blocks, Layout.RowBytes, 1, Rows)];

    internal override unsafe WeightMatrix Relocated(nint[] starts) => new Q4KWeightMatrix(Name, new Q4KLayout((byte*)starts[0], Rows, Cols, owner: null));

    protected internal override int ActivationBlockSize => Q4KLayout.SubBlockValues;

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end) =>
        Q4KRows.Rows(Layout, start, end, p.Activations, new Span<float>(p.Y, p.Tokens * Rows));

    public override void CopyRow(int row, Span<float> destination)
    {
        GgmlBlocks.DequantizeQ4_K(Layout.Row(row), destination[..Cols]);
        GC.KeepAlive(Layout.Owner);
    }
}
