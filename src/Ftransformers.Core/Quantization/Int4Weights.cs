using Ftransformers.Kernels;
using Ftransformers.Memory;

namespace Ftransformers.Quantization;

/// <summary>
/// A [rows, cols] matrix in grouped INT4, as data. Rows are cols/2 bytes of nibbles in blocks of 32 weights:
/// byte j of a block holds weight j in its low nibble and weight j + 16 in its high nibble, so that unpacking
/// a block gives its 32 weights in order. Scales and mins are F16, one per group, row-major (group 32: 5 bits per
/// weight in all). The arrays are owned (quantized at load) or mapped from a converted checkpoint.
/// </summary>
public sealed unsafe class Int4Weights
{
    /// <summary>Weights per packed block (16 bytes).</summary>
    public const int BlockSize = Int4Layout.BlockSize;

    private readonly byte* _packed;
    private readonly Half* _scales, _mins;
    private readonly object? _owner;

    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features (a multiple of the group size).</summary>
    public int Cols { get; }
    /// <summary>The format.</summary>
    public Int4Format Format { get; }
    /// <summary>Groups per row.</summary>
    public int GroupsPerRow => Cols / Format.GroupSize;

    /// <summary>Wraps memory that outlives this object (a mapped checkpoint); <paramref name="mins"/> is null when symmetric.</summary>
    internal Int4Weights(int rows, int cols, Int4Format format, byte* packed, Half* scales, Half* mins, object? owner = null)
    {
        Check(rows, cols, format);
        if ((mins == null) != format.Symmetric)
            throw new ArgumentException($"An {format} matrix {(format.Symmetric ? "has no" : "needs")} mins.");
        (Rows, Cols, Format, _owner) = (rows, cols, format, owner);
        _packed = packed;
        _scales = scales;
        _mins = mins;
    }

    /// <summary>Takes ownership of pinned arrays (as <see cref="Int4Quantizer"/> fills them).</summary>
    internal static Int4Weights FromOwned(int rows, int cols, Int4Format format, PinnedArray<byte> packed, PinnedArray<Half> scales, PinnedArray<Half>? mins)
    {
        Check(rows, cols, format);
        if (packed.Length != (long)rows * cols / 2 || scales.Length != (long)rows * (cols / format.GroupSize) || (mins != null && mins.Length != scales.Length))
            throw new ArgumentException($"Array sizes do not match a [{rows}, {cols}] {format} matrix.");
        return new Int4Weights(rows, cols, format, packed.Pointer, scales.Pointer, mins == null ? null : mins.Pointer, (packed, scales, mins));
    }

    /// <summary>A matrix over pinned copies of <paramref name="packed"/>, <paramref name="scales"/> and <paramref name="mins"/> (empty when symmetric).</summary>
    internal static Int4Weights CopyOf(int rows, int cols, Int4Format format, ReadOnlySpan<byte> packed, ReadOnlySpan<Half> scales, ReadOnlySpan<Half> mins) =>
        FromOwned(rows, cols, format, PinnedArray<byte>.CopyOf(packed), PinnedArray<Half>.CopyOf(scales), format.Symmetric ? null : PinnedArray<Half>.CopyOf(mins));

    private static void Check(int rows, int cols, Int4Format format)
    {
        format.Validate();
        if (rows < 1 || cols < 1 || cols % format.GroupSize != 0)
            throw new ArgumentException($"An {format} matrix needs a column count that is a multiple of {format.GroupSize}; got [{rows}, {cols}].");
    }

    /// <summary>The packed nibbles of a row (cols/2 bytes).</summary>
    public ReadOnlySpan<byte> PackedRow(int row) => new(_packed + (long)row * (Cols / 2), Cols / 2);

    /// <summary>The scales of a row's groups.</summary>
    public ReadOnlySpan<Half> ScalesRow(int row) => new(_scales + (long)row * GroupsPerRow, GroupsPerRow);

    /// <summary>The mins of a row's groups; empty when symmetric.</summary>
    public ReadOnlySpan<Half> MinsRow(int row) => _mins == null ? default : new(_mins + (long)row * GroupsPerRow, GroupsPerRow);

    /// <summary>All packed bytes, row-major.</summary>
    public ReadOnlySpan<byte> Packed => new(_packed, checked(Rows * Cols / 2));

    /// <summary>All scales, row-major.</summary>
    public ReadOnlySpan<Half> Scales => new(_scales, Rows * GroupsPerRow);

    /// <summary>All mins, row-major; empty when symmetric.</summary>
    public ReadOnlySpan<Half> Mins => _mins == null ? default : new(_mins, Rows * GroupsPerRow);

    /// <summary>Keeps the memory's owner (a mapped checkpoint) alive until here, for callers that use raw pointers.</summary>
    internal void KeepAlive() => GC.KeepAlive(_owner);

    /// <summary>The weights as the kernels read them (this object keeps their memory alive).</summary>
    internal Int4Layout Layout => new(_packed, _scales, _mins, Rows, Cols, Format.GroupSize, this);

    /// <summary>The 4-bit code of weight (row, col).</summary>
    public int Code(int row, int col)
    {
        byte b = PackedRow(row)[col / BlockSize * 16 + col % 16];
        return col % BlockSize < 16 ? b & 0xF : b >> 4;
    }

    /// <summary>Decodes a row to F32.</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        ReadOnlySpan<Half> scales = ScalesRow(row), mins = MinsRow(row);
        for (int c = 0; c < Cols; c++)
        {
            int g = c / Format.GroupSize;
            destination[c] = Format.Symmetric ? (float)scales[g] * (Code(row, c) - 8) : (float)scales[g] * Code(row, c) + (float)mins[g];
        }
        GC.KeepAlive(_owner);
    }
}
