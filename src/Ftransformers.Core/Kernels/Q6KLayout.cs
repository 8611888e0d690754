namespace Ftransformers.Kernels;

/// <summary>
/// Rows of GGUF's Q6_K blocks as llama.cpp stores them, the layout <see cref="Q6KRows"/> reads in place: each row is
/// <see cref="BlocksPerRow"/> blocks of 256 values in 210 bytes: 128 bytes of the codes' low four bits, 64 bytes of
/// their high two bits, sixteen signed 8-bit scales (one per sub-block of 16 values), then an F16 scale d. In each half
/// of 128 values, value 32k + l (k = 0..3) takes the low nibble (k = 0, 1) or high nibble (k = 2, 3) of low byte
/// l + 32 (k mod 2), and bits 2k, 2k + 1 of high byte l. A value is d · scale_j · (code − 32). <see cref="Owner"/>
/// keeps the memory alive.
/// </summary>
public readonly unsafe struct Q6KLayout
{
    /// <summary>Values per block.</summary>
    public const int BlockValues = 256;
    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 210;
    /// <summary>Values per sub-block (one signed 8-bit scale each).</summary>
    public const int SubBlockValues = 16;

    /// <summary>Describes <paramref name="rows"/> rows of <paramref name="cols"/> values (a multiple of 256) that <paramref name="owner"/> keeps.</summary>
    /// <exception cref="ArgumentException"><paramref name="cols"/> is not a whole number of blocks.</exception>
    public Q6KLayout(byte* blocks, int rows, int cols, object? owner)
    {
        if (cols <= 0 || cols % BlockValues != 0)
            throw new ArgumentException($"Q6_K rows hold whole blocks of {BlockValues} values; {cols} columns do not.", nameof(cols));
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
