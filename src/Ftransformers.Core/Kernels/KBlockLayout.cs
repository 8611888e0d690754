namespace Ftransformers.Kernels;

/// <summary>The GGUF K-quant formats whose blocks kernels compute on as stored.</summary>
public enum KBlockFormat
{
    /// <summary>
    /// Q4_K (<see cref="Q4KRows"/>): 144 bytes a block: an F16 scale d and min scale dmin, twelve bytes of 6-bit scales
    /// and mins for eight sub-blocks of 32, then 128 bytes of 4-bit codes (in each 64 values, the low nibbles of 32 bytes
    /// are the first sub-block and the high nibbles the second). A value is d · scale_j · code − dmin · min_j.
    /// </summary>
    Q4K,
    /// <summary>
    /// Q5_K (<see cref="Q4KRows"/>): 176 bytes a block: Q4_K's d, dmin and scales, then a 32-byte plane of fifth bits
    /// (bit j of byte l: value l of sub-block j), then Q4_K's 128 bytes of low four bits. A value is
    /// d · scale_j · code − dmin · min_j with codes 0..31.
    /// </summary>
    Q5K,
    /// <summary>
    /// Q6_K (<see cref="Q6KRows"/>): 210 bytes a block: 128 bytes of the codes' low four bits, 64 bytes of their high two
    /// bits, sixteen signed 8-bit scales (one per sub-block of 16), then an F16 scale d. In each half of 128 values,
    /// value 32k + l (k = 0..3) takes the low nibble (k = 0, 1) or high nibble (k = 2, 3) of low byte l + 32 (k mod 2),
    /// and bits 2k, 2k + 1 of high byte l. A value is d · scale_j · (code − 32).
    /// </summary>
    Q6K,
}

/// <summary>
/// Rows of GGUF K-quant blocks as llama.cpp stores them, read in place by their format's kernel: each row is
/// <see cref="BlocksPerRow"/> blocks of 256 values (<see cref="KBlockFormat"/> tells a block's bytes).
/// <see cref="Owner"/> keeps the memory alive.
/// </summary>
public readonly unsafe struct KBlockLayout
{
    /// <summary>Values per block, in every K-quant format.</summary>
    public const int BlockValues = 256;
    /// <summary>Bytes per Q4_K block.</summary>
    public const int Q4KBlockBytes = 144;
    /// <summary>Values per Q4_K sub-block (one 6-bit scale and min each).</summary>
    public const int Q4KSubBlockValues = 32;
    /// <summary>Bytes per Q5_K block.</summary>
    public const int Q5KBlockBytes = 176;
    /// <summary>Bytes per Q6_K block.</summary>
    public const int Q6KBlockBytes = 210;
    /// <summary>Values per Q6_K sub-block (one signed 8-bit scale each).</summary>
    public const int Q6KSubBlockValues = 16;

    /// <summary>Describes <paramref name="rows"/> rows of <paramref name="cols"/> values (a multiple of 256) in <paramref name="format"/> that <paramref name="owner"/> keeps.</summary>
    /// <exception cref="ArgumentException"><paramref name="cols"/> is not a whole number of blocks.</exception>
    public KBlockLayout(KBlockFormat format, byte* blocks, int rows, int cols, object? owner)
    {
        if (cols <= 0 || cols % BlockValues != 0)
            throw new ArgumentException($"{NameOf(format)} rows hold whole blocks of {BlockValues} values; {cols} columns do not.", nameof(cols));
        Format = format;
        Blocks = blocks;
        Rows = rows;
        Cols = cols;
        Owner = owner;
    }

    /// <summary>The blocks' format.</summary>
    public KBlockFormat Format { get; }
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
    public long RowBytes => (long)BlocksPerRow * BlockBytesOf(Format);

    /// <summary>Bytes of a block of <paramref name="format"/>.</summary>
    public static int BlockBytesOf(KBlockFormat format) => format switch
    {
        KBlockFormat.Q4K => Q4KBlockBytes,
        KBlockFormat.Q5K => Q5KBlockBytes,
        _ => Q6KBlockBytes,
    };

    /// <summary>Bytes of <paramref name="rows"/> rows of <paramref name="cols"/> values in <paramref name="format"/>.</summary>
    public static long BytesOf(KBlockFormat format, long rows, long cols) => rows * (cols / BlockValues) * BlockBytesOf(format);

    /// <summary>The format's name as GGUF writes it (Q4_K, Q5_K, Q6_K).</summary>
    public static string NameOf(KBlockFormat format) => format switch
    {
        KBlockFormat.Q4K => "Q4_K",
        KBlockFormat.Q5K => "Q5_K",
        _ => "Q6_K",
    };

    /// <summary>A row's blocks.</summary>
    public ReadOnlySpan<byte> Row(int row) => new(Blocks + row * RowBytes, (int)RowBytes);
}
