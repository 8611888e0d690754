using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>
/// A row-major [rows, cols] weight matrix (a linear layer y = W x) in its stored precision. Products over all
/// rows are split across the compute pool; single rows serve MLA's absorbed projections.
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

    /// <summary>The threads that compute products; null computes on the caller.</summary>
    public ComputePool? Pool { get; set; }

    /// <summary>Bytes of weights (and scales) one product reads.</summary>
    public abstract long ByteSize { get; }

    /// <summary>Dot product of row <paramref name="row"/> with <paramref name="x"/>.</summary>
    public abstract float DotRow(int row, ReadOnlySpan<float> x);

    /// <summary>accumulator += scale * row <paramref name="row"/>.</summary>
    public abstract void MultiplyAddRow(int row, float scale, Span<float> accumulator);

    /// <summary>Copies row <paramref name="row"/> as F32 (embedding lookup).</summary>
    public abstract void CopyRow(int row, Span<float> destination);

    /// <summary>Tokens one pass handles; longer batches are split.</summary>
    protected virtual int MaxTokensPerPass => int.MaxValue;

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
                int minChunk = Math.Max(1, MinWorkPerChunk / Math.Max(1, Cols * n));
                if (Pool is { } pool)
                    pool.For(Rows, product, minChunk);
                else
                    product.Run(0, Rows);
            }
            product.Finish();
        }
    }

    /// <summary>Quantizes the activations of a product, for formats that compute in integers.</summary>
    protected virtual void PrepareActivations(MatrixProduct product)
    {
    }

    /// <summary>Computes rows [start, end) of every token's output.</summary>
    protected internal virtual void MultiplyRows(MatrixProduct p, int start, int end)
    {
        for (int r = start; r < end; r++)
            for (int t = 0; t < p.Tokens; t++)
                p.Y[(long)t * Rows + r] = DotRow(r, new ReadOnlySpan<float>(p.X + (long)t * Cols, Cols));
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

/// <summary>
/// The state of one matrix product handed to the compute pool: inputs, outputs and reusable activation buffers.
/// One per calling thread, so that dispatch allocates nothing.
/// </summary>
internal sealed unsafe class MatrixProduct : IRangeWork
{
    [ThreadStatic]
    private static MatrixProduct? t_current;

    public WeightMatrix Matrix { get; private set; } = null!;
    public float* X { get; private set; }
    public float* Y { get; private set; }
    public int Tokens { get; private set; }

    /// <summary>Quantized activations for INT8 and INT4 weights.</summary>
    public Int8Activations Activations { get; } = new();

    public static MatrixProduct ForThisThread() => t_current ??= new MatrixProduct();

    public void Start(WeightMatrix matrix, float* x, float* y, int tokens)
    {
        Matrix = matrix;
        X = x;
        Y = y;
        Tokens = tokens;
    }

    public void Finish()
    {
        X = null;
        Y = null;
        Matrix = null!;
    }

    public ReadOnlySpan<float> Input => new(X, Tokens * Matrix.Cols);

    public void Run(int start, int end) => Matrix.MultiplyRows(this, start, end);
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

    public override long ByteSize => (long)Rows * Cols * sizeof(float);

    private ReadOnlySpan<float> Row(int row) => new(_data + (long)row * Cols, Cols);

    public override float DotRow(int row, ReadOnlySpan<float> x) => TensorPrimitives.Dot(Row(row), x);

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator) => TensorPrimitives.MultiplyAdd(Row(row), scale, accumulator, accumulator);

    public override void CopyRow(int row, Span<float> destination) => Row(row).CopyTo(destination);
}

/// <summary>BF16 weights read in place from the mapping (or a pinned array) and widened on the fly.</summary>
internal sealed unsafe class Bf16WeightMatrix : WeightMatrix
{
    private readonly ushort* _data;
    private readonly ushort[]? _owned;

    public Bf16WeightMatrix(string name, int rows, int cols, ushort* mapped) : base(name, rows, cols) => _data = mapped;

    /// <summary>Rounds F32 values to BF16 into an owned array.</summary>
    public Bf16WeightMatrix(string name, int rows, int cols, ReadOnlySpan<float> values) : base(name, rows, cols)
    {
        _owned = GC.AllocateUninitializedArray<ushort>(checked(rows * cols), pinned: true);
        BFloat16.FromSingle(values, _owned);
        _data = (ushort*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _owned[0]);
    }

    public override long ByteSize => (long)Rows * Cols * sizeof(ushort);

    private ReadOnlySpan<ushort> Row(int row) => new(_data + (long)row * Cols, Cols);

    public override float DotRow(int row, ReadOnlySpan<float> x) => BFloat16.Dot(Row(row), x);

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator) => BFloat16.MultiplyAdd(Row(row), scale, accumulator);

    public override void CopyRow(int row, Span<float> destination) => BFloat16.ToSingle(Row(row), destination);
}

/// <summary>W8A8: INT8 weights per output channel against activations quantized to INT8 per token.</summary>
internal sealed class Int8WeightMatrix(string name, Int8Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int8Weights Weights { get; } = weights;

    public override long ByteSize => Weights.ByteSize;

    protected override void PrepareActivations(MatrixProduct product) => product.Activations.QuantizePerToken(product.Input, product.Tokens, Cols);

    protected internal override void MultiplyRows(MatrixProduct p, int start, int end)
    {
        Int8Activations a = p.Activations;
        for (int r = start; r < end; r++)
        {
            ReadOnlySpan<sbyte> row = Weights.Row(r);
            float scale = Weights.Scale(r);
            for (int t = 0; t < p.Tokens; t++)
                unsafe { p.Y[(long)t * Rows + r] = scale * a.Scales(t)[0] * Int8Dot.Dot(row, a.Values(t)); }
        }
    }

    // The single-row paths (MLA absorption) keep F32 activations: weights are dequantized on the fly.
    public override float DotRow(int row, ReadOnlySpan<float> x)
    {
        ReadOnlySpan<sbyte> codes = Weights.Row(row);
        float sum = 0;
        for (int i = 0; i < codes.Length; i++)
            sum += codes[i] * x[i];
        return sum * Weights.Scale(row);
    }

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator)
    {
        ReadOnlySpan<sbyte> codes = Weights.Row(row);
        float s = scale * Weights.Scale(row);
        for (int i = 0; i < codes.Length; i++)
            accumulator[i] += codes[i] * s;
    }

    public override void CopyRow(int row, Span<float> destination)
    {
        ReadOnlySpan<sbyte> codes = Weights.Row(row);
        for (int i = 0; i < codes.Length; i++)
            destination[i] = codes[i] * Weights.Scale(row);
    }
}

/// <summary>Grouped INT4 weights against activations quantized to INT8 in blocks of 32.</summary>
internal sealed class Int4WeightMatrix(string name, Int4Weights weights) : WeightMatrix(name, weights.Rows, weights.Cols)
{
    public Int4Weights Weights { get; } = weights;

    public override long ByteSize => Weights.ByteSize;

    protected override int MaxTokensPerPass => Int4Dot.MaxTokens;

    protected override void PrepareActivations(MatrixProduct product) => product.Activations.QuantizePerBlock(product.Input, product.Tokens, Cols);

    protected internal override unsafe void MultiplyRows(MatrixProduct p, int start, int end) =>
        Int4Dot.Rows(Weights, start, end, p.Activations, new Span<float>(p.Y, p.Tokens * Rows));

    public override float DotRow(int row, ReadOnlySpan<float> x)
    {
        Span<float> w = stackalloc float[Cols];
        Weights.DequantizeRow(row, w);
        return TensorPrimitives.Dot(w, x);
    }

    public override void MultiplyAddRow(int row, float scale, Span<float> accumulator)
    {
        Span<float> w = stackalloc float[Cols];
        Weights.DequantizeRow(row, w);
        TensorPrimitives.MultiplyAdd(w, scale, accumulator, accumulator);
    }

    public override void CopyRow(int row, Span<float> destination) => Weights.DequantizeRow(row, destination);
}
