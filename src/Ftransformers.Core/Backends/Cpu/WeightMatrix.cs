using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Threading;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// A row-major [rows, cols] weight matrix (a linear layer y = W x) in its stored precision. Products over all
/// rows are split across the compute pool; single rows, widened to F32, serve MLA's absorbed projections.
/// </summary>
internal abstract unsafe class WeightMatrix(string name, int rows, int cols)
{
    // Below this many multiply-adds per chunk, handing rows to other threads costs more than it saves.
    private const int MinWorkPerChunk = 1 << 15;

    /// <summary>The tensor name, for messages.</summary>
    public string Name { get; } = name;

    /// <summary>Output features.</summary>
    public int Rows { get; } = rows;

    /// <summary>Input features.</summary>
    public int Cols { get; } = cols;

    /// <summary>The matrix's bytes as stored and its parameters (rows x cols).</summary>
    public PartWeights Footprint => new(Storage().Sum(s => s.Length), (long)Rows * Cols);

    /// <summary>The bytes and values of a norm or bias vector.</summary>
    public static PartWeights VectorWeights(float[] vector) => new((long)vector.Length * sizeof(float), vector.Length);

    /// <summary>The threads that compute products; null computes on the caller.</summary>
    public ComputePool? Pool { get; set; }

    /// <summary>Dot product of row <paramref name="row"/> with <paramref name="x"/>.</summary>
    /// <remarks>By default the row is widened to F32 (<see cref="CopyRow"/>), then a vector dot; formats with a direct dot override it.</remarks>
    public virtual float DotRow(int row, ReadOnlySpan<float> x)
    {
        Span<float> w = Cols <= 4096 ? stackalloc float[Cols] : new float[Cols];
        CopyRow(row, w);
        return TensorPrimitives.Dot(w, x);
    }

    /// <summary>Copies row <paramref name="row"/> as F32 (embedding lookup).</summary>
    public abstract void CopyRow(int row, Span<float> destination);

    /// <summary>Rows that threads should not split (a layout's row group), so that none is computed twice.</summary>
    protected internal virtual int RowAlignment => 1;

    /// <summary>Tokens one pass handles; longer batches are split.</summary>
    protected internal virtual int MaxTokensPerPass => int.MaxValue;

    /// <summary>y[t] = W x[t] for <paramref name="tokens"/> row-major inputs of width <see cref="Cols"/>.</summary>
    public void Multiply(ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        if (x.Length < tokens * Cols || y.Length < tokens * Rows)
            throw new ArgumentException($"{Name}: {tokens} tokens need {tokens * Cols} inputs and {tokens * Rows} outputs (got {x.Length}, {y.Length}).");
        MatrixProduct product = MatrixProduct.ForThisThread();
        fixed (float* px = x, py = y)
        {
            for (int t0 = 0; t0 < tokens; t0 += MaxTokensPerPass)
            {
                int n = Math.Min(MaxTokensPerPass, tokens - t0);
                product.Start(this, px + (long)t0 * Cols, py + (long)t0 * Rows, n);
                PrepareActivations(product);
                // The pool hands out units of RowAlignment rows (MatrixProduct.Run maps them back to rows).
                int units = (Rows + RowAlignment - 1) / RowAlignment;
                int minChunk = Math.Max(1, MinWorkPerChunk / Math.Max(1, Cols * n * RowAlignment));
                ComputePool.RunOn(Pool, units, product, minChunk);
            }
            product.Finish();
        }
    }

    /// <summary>
    /// Values per scale of the INT8 activations the format computes with: the input width (per token), 32 (per block),
    /// or 0 for formats that read float inputs.
    /// </summary>
    protected internal virtual int ActivationBlockSize => 0;

    /// <summary>Prepares the inputs of a product as the format reads them: quantized for formats that compute in integers.</summary>
    protected internal virtual void PrepareActivations(MatrixProduct product)
    {
        if (ActivationBlockSize > 0)
            product.Activations.Quantize(product.Input, product.Tokens, Cols, ActivationBlockSize);
    }

    /// <summary>
    /// The matrix's memory as row-ordered stretches, each holding <see cref="RowStorage.BytesPerUnit"/> bytes per unit
    /// of <see cref="RowStorage.UnitRows"/> rows, so that a range of whole units is a range of bytes (for placing
    /// rows on NUMA nodes).
    /// </summary>
    internal abstract RowStorage[] Storage();

    /// <summary>The same matrix over copies of <see cref="Storage"/> at <paramref name="starts"/>, which outlive it.</summary>
    internal abstract WeightMatrix Relocated(nint[] starts);

    /// <summary>The address of memory that does not move (mapped, native or pinned).</summary>
    protected static nint AddressOf<T>(ReadOnlySpan<T> span) where T : unmanaged =>
        (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(span));

    /// <summary>Computes rows [start, end) of every token's output.</summary>
    protected internal virtual void MultiplyRows(MatrixProduct p, int start, int end)
    {
        for (int r = start; r < end; r++)
            for (int t = 0; t < p.Tokens; t++)
                p.Y[(long)t * Rows + r] = DotRow(r, new ReadOnlySpan<float>(p.X + (long)t * Cols, Cols));
    }
}

/// <summary>A row-ordered stretch of a matrix's memory: <paramref name="BytesPerUnit"/> bytes for each of <paramref name="Units"/> units of <paramref name="UnitRows"/> rows.</summary>
internal readonly record struct RowStorage(nint Start, long BytesPerUnit, int UnitRows, int Units)
{
    /// <summary>Bytes in all.</summary>
    public long Length => BytesPerUnit * Units;
}
