namespace Ftransformers.Kernels;

/// <summary>
/// Rows of GGUF's Q4_K blocks as llama.cpp stores them, the layout <see cref="Q4KRows"/> reads in place: each row is
/// <see cref="BlocksPerRow"/> blocks of 256 values in 144 bytes (an F16 scale d and min scale dmin, twelve bytes of
/// 6-bit scales and mins for eight sub-blocks of 32, then 128 bytes of 4-bit codes: in each 64 values, the low
/// nibbles of 32 bytes are the first sub-block and the high nibbles the second). A value is
/// d · scale_j · code − dmin · min_j. <see cref="Owner"/> keeps the memory alive.
/// </summary>
public readonly unsafe struct Q4KLayout
{
    /// <summary>Values per block.</summary>
    public const int BlockValues = 256;
    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 144;
    /// <summary>Values per sub-block (one 6-bit scale and min each).</summary>
    public const int SubBlockValues = 32;

    /// <summary>Describes <paramref name="rows"/> rows of <paramref name="cols"/> values (a multiple of 256) that <paramref name="owner"/> keeps.</summary>
    /// <exception cref="ArgumentException"><paramref name="cols"/> is not a whole number of blocks.</exception>
    public Q4KLayout(byte* blocks, int rows, int cols, object? owner)
    {
        if (cols <= 0 || cols % BlockValues != 0)
            throw new ArgumentException($"Q4_K rows hold whole blocks of {BlockValues} values; {cols} columns do not.", nameof(cols));
        Blocks = blocks;
        Rows = rows;
        Cols = cols;
        Owner = owner;
    }

    /// <summary>The blocks, row after row.</summary>
    public byte* Blocks { get; }
    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features.</summary>
    public int Cols { get; }
    /// <summary>What keeps the memory alive; kernels hold it until they return.</summary>
    public object? Owner { get; }
    /// <summary>Blocks per row.</summary>
    public int BlocksPerRow => Cols / BlockValues;
    /// <summary>Bytes per row.</summary>
    public long RowBytes => (long)BlocksPerRow * BlockBytes;

    /// <summary>Bytes of <paramref name="rows"/> rows of <paramref name="cols"/> values.</summary>
    public static long BytesOf(long rows, long cols) => rows * (cols / BlockValues) * BlockBytes;

    /// <summary>A row's blocks.</summary>
    public ReadOnlySpan<byte> Row(int row) => new(Blocks + row * RowBytes, (int)RowBytes);
}
