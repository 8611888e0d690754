namespace Ftransformers.Kernels;

/// <summary>
/// INT8 weights with one F32 scale per row, or per block of <see cref="Q8BlockSize"/> values, as the kernels read them;
/// <see cref="Owner"/> keeps the memory alive.
/// </summary>
public readonly unsafe struct Int8Layout
{
    /// <summary>Values per scale of block-scaled INT8 (GGUF's Q8_0).</summary>
    public const int Q8BlockSize = 32;

    /// <summary>
    /// Describes memory that <paramref name="owner"/> keeps (or that outlives every use when null); <paramref name="blockSize"/>
    /// is the values per scale: 0 or <paramref name="cols"/> for one per row, or <see cref="Q8BlockSize"/>.
    /// </summary>
    public Int8Layout(sbyte* codes, float* scales, int rows, int cols, object? owner, int blockSize = 0)
    {
        Codes = codes;
        Scales = scales;
        Rows = rows;
        Cols = cols;
        Owner = owner;
        BlockSize = blockSize == 0 ? cols : blockSize;
    }

    /// <summary>The codes, row after row.</summary>
    public sbyte* Codes { get; }
    /// <summary>The scales: one per row, or <see cref="BlocksPerRow"/> per row, row after row.</summary>
    public float* Scales { get; }
    /// <summary>Values per scale: <see cref="Cols"/> or <see cref="Q8BlockSize"/>.</summary>
    public int BlockSize { get; }
    /// <summary>Scales per row.</summary>
    public int BlocksPerRow => Cols / BlockSize;
    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features.</summary>
    public int Cols { get; }
    /// <summary>What keeps the memory alive; kernels hold it until they return.</summary>
    public object? Owner { get; }

    /// <summary>A row's codes.</summary>
    public ReadOnlySpan<sbyte> Row(int row) => new(Codes + (long)row * Cols, Cols);
    /// <summary>A row's scale (one scale per row).</summary>
    public float Scale(int row) => Scales[row];
    /// <summary>A row's scales, one per block.</summary>
    public ReadOnlySpan<float> RowScales(int row) => new(Scales + (long)row * BlocksPerRow, BlocksPerRow);
}
