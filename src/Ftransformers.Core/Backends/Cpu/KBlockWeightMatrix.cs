using Ftransformers.Kernels;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// GGUF K-quant blocks (Q4_K, Q5_K, Q6_K), read in place (mapped from a GGUF or a converted checkpoint, or quantized at
/// load to Q4_K), against activations quantized to INT8 per block of 32 (<see cref="Q4KRows"/>, <see cref="Q6KRows"/>).
/// </summary>
internal sealed class KBlockWeightMatrix(string name, KBlockLayout layout) : WeightMatrix(name, layout.Rows, layout.Cols)
{
    /// <summary>The blocks as the kernel reads them.</summary>
    public KBlockLayout Layout { get; } = layout;

    /// <summary>Quantizes F32 rows to Q4_K; the matrix owns the blocks.</summary>
    public static unsafe KBlockWeightMatrix QuantizeQ4K(string name, ReadOnlySpan<float> weights, int rows, int cols)
    {
        var blocks = Memory.PinnedArray<byte>.Uninitialized((int)KBlockLayout.BytesOf(KBlockFormat.Q4K, rows, cols));
        try
        {
            Quantization.Q4KQuantizer.Quantize(weights, rows, cols, blocks.Span);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{name}: {e.Message}", e);
        }
        return new KBlockWeightMatrix(name, new KBlockLayout(KBlockFormat.Q4K, blocks.Pointer, rows, cols, blocks));
    }

    internal override unsafe RowStorage[] Storage() => [new((nint)Layout.Blocks, Layout.RowBytes, 1, Rows)];

    internal override unsafe WeightMatrix Relocated(nint[] starts) => new KBlockWeightMatrix(Name, new KBlockLayout(Layout.Format, (byte*)starts[0], Rows, Cols, owner: null));

    protected internal override int ActivationBlockSize => Int4Layout.BlockSize;

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end)
    {
        var y = new Span<float>(p.Y, p.Tokens * Rows);
        if (Layout.Format == KBlockFormat.Q6K)
            Q6KRows.Rows(Layout, start, end, p.Activations, y);
        else
            Q4KRows.Rows(Layout, start, end, p.Activations, y);
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        switch (Layout.Format)
        {
            case KBlockFormat.Q4K: GgmlBlocks.DequantizeQ4_K(Layout.Row(row), destination[..Cols]); break;
            case KBlockFormat.Q5K: GgmlBlocks.DequantizeQ5_K(Layout.Row(row), destination[..Cols]); break;
            default: GgmlBlocks.DequantizeQ6_K(Layout.Row(row), destination[..Cols]); break;
        }
        GC.KeepAlive(Layout.Owner);
    }
}
