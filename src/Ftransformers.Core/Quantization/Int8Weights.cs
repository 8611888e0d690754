using Ftransformers.Kernels;
using Ftransformers.Memory;

namespace Ftransformers.Quantization;

/// <summary>
/// A [rows, cols] matrix of INT8 weights with one F32 scale per output row (w ≈ scale_row · code), or one per block of
/// 32 values of a row (GGUF's Q8_0, kept without rounding), as data; owned (quantized at load) or mapped from a
/// converted checkpoint. Codes from our quantizer lie in [-127, 127]; Q8_0 blocks may hold -128.
/// </summary>
public sealed unsafe class Int8Weights
{
    private readonly sbyte* _codes;
    private readonly float* _scales;
    private readonly object? _owner;

    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features.</summary>
    public int Cols { get; }

    /// <summary>Values of a row sharing a scale: <see cref="Cols"/> (one scale per row) or <see cref="Int8Layout.Q8BlockSize"/>.</summary>
    public int BlockSize { get; }

    /// <summary>Scales per row.</summary>
    public int BlocksPerRow => Cols / BlockSize;

    // blockSize: values per scale, 0 or cols for one scale per row, or 32 (scales then holds rows x cols / 32).
    internal Int8Weights(int rows, int cols, sbyte* codes, float* scales, object? owner = null, int blockSize = 0)
    {
        if (rows < 1 || cols < 1)
            throw new ArgumentException($"An INT8 matrix needs positive dimensions; got [{rows}, {cols}].");
        blockSize = blockSize == 0 ? cols : blockSize;
        if (blockSize != cols && (blockSize != Int8Layout.Q8BlockSize || cols % blockSize != 0))
            throw new ArgumentException($"An INT8 matrix has one scale per row or per block of {Int8Layout.Q8BlockSize} values; {blockSize} does not divide a row of {cols}.");
        (Rows, Cols, BlockSize, _owner) = (rows, cols, blockSize, owner);
        _codes = codes;
        _scales = scales;
    }

    /// <summary>Takes ownership of pinned arrays (as <see cref="Int8Quantizer"/> fills them).</summary>
    internal static Int8Weights FromOwned(int rows, int cols, PinnedArray<sbyte> codes, PinnedArray<float> scales)
    {
        if (codes.Length != (long)rows * cols || scales.Length != rows)
            throw new ArgumentException($"Array sizes do not match a [{rows}, {cols}] INT8 matrix.");
        return new Int8Weights(rows, cols, codes.Pointer, scales.Pointer, (codes, scales));
    }

    /// <summary>Rows [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) as a matrix of their own, sharing this one's memory.</summary>
    internal Int8Weights Slice(int start, int count)
    {
        if (start < 0 || count < 1 || start + count > Rows)
            throw new ArgumentOutOfRangeException(nameof(start), $"Rows [{start}, {start + count}) are outside [0, {Rows}).");
        return new Int8Weights(count, Cols, _codes + (long)start * Cols, _scales + (long)start * BlocksPerRow, this, BlockSize);
    }

    /// <summary>A row's codes.</summary>
    public ReadOnlySpan<sbyte> Row(int row) => new(_codes + (long)row * Cols, Cols);

    /// <summary>A row's scales, one per block.</summary>
    public ReadOnlySpan<float> RowScales(int row) => new(_scales + (long)row * BlocksPerRow, BlocksPerRow);

    /// <summary>A row's scale (one scale per row only).</summary>
    public float Scale(int row) => BlockSize == Cols ? _scales[row] : throw new InvalidOperationException("This matrix has a scale per block of 32 values: use RowScales.");

    /// <summary>All codes, row-major.</summary>
    public ReadOnlySpan<sbyte> Codes => new(_codes, checked(Rows * Cols));

    /// <summary>All scales, row after row.</summary>
    public ReadOnlySpan<float> Scales => new(_scales, checked(Rows * BlocksPerRow));

    /// <summary>The weights as the kernels read them (this object keeps their memory alive).</summary>
    internal Int8Layout Layout => new(_codes, _scales, Rows, Cols, this, BlockSize);

    /// <summary>Keeps the owner of the memory alive (for callers holding only spans).</summary>
    internal void KeepAlive() => GC.KeepAlive(_owner);
}
