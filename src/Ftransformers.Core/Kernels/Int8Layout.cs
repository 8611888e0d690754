namespace Ftransformers.Kernels;

/// <summary>INT8 weights with one F32 scale per row, as the kernels read them; <see cref="Owner"/> keeps the memory alive.</summary>
public readonly unsafe struct Int8Layout
{
    /// <summary>Describes memory that <paramref name="owner"/> keeps (or that outlives every use when null).</summary>
    public Int8Layout(sbyte* codes, float* scales, int rows, int cols, object? owner)
    {
        Codes = codes;
        Scales = scales;
        Rows = rows;
        Cols = cols;
        Owner = owner;
    }

    /// <summary>The codes, row after row.</summary>
    public sbyte* Codes { get; }
    /// <summary>One scale per row.</summary>
    public float* Scales { get; }
    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features.</summary>
    public int Cols { get; }
    /// <summary>What keeps the memory alive; kernels hold it until they return.</summary>
    public object? Owner { get; }

    /// <summary>A row's codes.</summary>
    public ReadOnlySpan<sbyte> Row(int row) => new(Codes + (long)row * Cols, Cols);
    /// <summary>A row's scale.</summary>
    public float Scale(int row) => Scales[row];
}
