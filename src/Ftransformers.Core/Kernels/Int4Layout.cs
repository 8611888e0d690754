namespace Ftransformers.Kernels;

/// <summary>
/// Row-major grouped INT4 weights as the kernels read them: each row is cols/2 bytes of nibbles in blocks of 32
/// weights (byte j of a block holds weight j low and weight j + 16 high); F16 scales, and mins unless symmetric (zero
/// point 8), one per group of <see cref="GroupSize"/> weights, row-major. <see cref="Owner"/> keeps the memory alive.
/// </summary>
public readonly unsafe struct Int4Layout
{
    /// <summary>Weights per packed block (16 bytes).</summary>
    public const int BlockSize = 32;

    /// <summary>Describes memory that <paramref name="owner"/> keeps (or that outlives every use when null); <paramref name="mins"/> is null when symmetric.</summary>
    public Int4Layout(byte* packed, Half* scales, Half* mins, int rows, int cols, int groupSize, object? owner)
    {
        Packed = packed;
        Scales = scales;
        Mins = mins;
        Rows = rows;
        Cols = cols;
        GroupSize = groupSize;
        Owner = owner;
    }

    /// <summary>The nibbles, row after row.</summary>
    public byte* Packed { get; }
    /// <summary>The group scales, row after row.</summary>
    public Half* Scales { get; }
    /// <summary>The group mins, row after row; null when symmetric.</summary>
    public Half* Mins { get; }
    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features.</summary>
    public int Cols { get; }
    /// <summary>Weights per scale.</summary>
    public int GroupSize { get; }
    /// <summary>What keeps the memory alive; kernels hold it until they return.</summary>
    public object? Owner { get; }

    /// <summary>No mins: the zero point is 8.</summary>
    public bool Symmetric => Mins == null;
    /// <summary>Groups per row.</summary>
    public int GroupsPerRow => Cols / GroupSize;

    /// <summary>The packed nibbles of a row.</summary>
    public ReadOnlySpan<byte> PackedRow(int row) => new(Packed + (long)row * (Cols / 2), Cols / 2);
    /// <summary>The scales of a row's groups.</summary>
    public ReadOnlySpan<Half> ScalesRow(int row) => new(Scales + (long)row * GroupsPerRow, GroupsPerRow);
    /// <summary>The mins of a row's groups; empty when symmetric.</summary>
    public ReadOnlySpan<Half> MinsRow(int row) => Mins == null ? default : new(Mins + (long)row * GroupsPerRow, GroupsPerRow);

    /// <summary>A row's scales and offsets (mins, or −8 · scale when symmetric) widened to F32, as the kernels use them.</summary>
    public void ScalesAndOffsetsRow(int row, Span<float> scales, Span<float> offsets)
    {
        Float16.ToSingle(ScalesRow(row), scales);
        if (Symmetric)
            System.Numerics.Tensors.TensorPrimitives.Multiply(scales[..GroupsPerRow], -8f, offsets);
        else
            Float16.ToSingle(MinsRow(row), offsets);
    }
}
