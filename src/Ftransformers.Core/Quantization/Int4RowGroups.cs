namespace Ftransformers.Quantization;

/// <summary>
/// Group-32 INT4 weights repacked at load for the AVX2 kernel (<see cref="Kernels.Int4RowGroupsAvx2"/>): rows in
/// groups of eight, so that one 32-byte load holds the same four packed bytes of a block from each of eight rows.
/// A product with four activation codes broadcast to every lane then fills eight row lanes, which need no horizontal
/// reduction, and a block's scales and mins of the eight rows are one vector. Same codes, scales and mins as the
/// row-major <see cref="Int4Weights"/>, so results do not depend on the layout beyond float summation order.
/// <para>
/// Layout: group g holds rows 8g..8g+7 (the last group is padded with zero rows). For block b and quad q (packed bytes
/// 4q..4q+3 of the block: weights 4q..4q+3 in their low nibbles, 16+4q..16+4q+3 in their high nibbles), row i's four
/// bytes sit at ((g · Blocks + b) · 4 + q) · 32 + 4i. Scales and mins (F16) sit at (g · Blocks + b) · 8 + i.
/// </para>
/// </summary>
public sealed class Int4RowGroups
{
    /// <summary>Rows a group holds: one per 32-bit lane of a 256-bit register.</summary>
    public const int RowsPerGroup = 8;

    private const int GroupBlockBytes = RowsPerGroup * 16;

    private Int4RowGroups(int rows, int cols, bool symmetric, byte[] packed, Half[] scales, Half[]? mins)
    {
        (Rows, Cols, Symmetric, Packed, Scales, Mins) = (rows, cols, symmetric, packed, scales, mins);
    }

    /// <summary>Output features.</summary>
    public int Rows { get; }

    /// <summary>Input features, a multiple of 32.</summary>
    public int Cols { get; }

    /// <summary>Groups of eight rows.</summary>
    public int Groups => (Rows + RowsPerGroup - 1) / RowsPerGroup;

    /// <summary>Blocks of 32 weights per row.</summary>
    public int Blocks => Cols / Int4Weights.BlockSize;

    /// <summary>No mins: the zero point is 8 (the min is −8 · scale).</summary>
    public bool Symmetric { get; }

    // Pinned, so that the kernel may take their addresses without fixing them.
    internal byte[] Packed { get; }
    internal Half[] Scales { get; }
    internal Half[]? Mins { get; }

    /// <summary>Whether <paramref name="weights"/> can be repacked: group size 32, the kernel's block.</summary>
    public static bool Suits(Int4Weights weights) => weights.Format.GroupSize == Int4Weights.BlockSize;

    /// <summary>Repacks <paramref name="weights"/> (group size 32) into row groups.</summary>
    public static Int4RowGroups From(Int4Weights weights)
    {
        if (!Suits(weights))
            throw new ArgumentException($"Row groups need INT4 group size {Int4Weights.BlockSize}, got {weights.Format}.", nameof(weights));
        int rows = weights.Rows, cols = weights.Cols, blocks = cols / Int4Weights.BlockSize;
        int groups = (rows + RowsPerGroup - 1) / RowsPerGroup;
        bool symmetric = weights.Format.Symmetric;
        byte[] packed = GC.AllocateArray<byte>(checked(groups * blocks * GroupBlockBytes), pinned: true);
        Half[] scales = GC.AllocateArray<Half>(groups * blocks * RowsPerGroup, pinned: true);
        Half[]? mins = symmetric ? null : GC.AllocateArray<Half>(scales.Length, pinned: true);
        // Four packed bytes (a quad) move as one uint: row r's quad q of block b goes to uint ((g·Blocks + b)·4 + q)·8 + i.
        Span<uint> quads = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(packed.AsSpan());
        for (int r = 0; r < rows; r++)
        {
            int g = r / RowsPerGroup, i = r % RowsPerGroup;
            ReadOnlySpan<uint> row = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(weights.PackedRow(r));
            ReadOnlySpan<Half> rowScales = weights.ScalesRow(r), rowMins = weights.MinsRow(r);
            for (int b = 0; b < blocks; b++)
            {
                int groupBlock = g * blocks + b;
                for (int q = 0; q < 4; q++)
                    quads[(groupBlock * 4 + q) * RowsPerGroup + i] = row[b * 4 + q];
                scales[groupBlock * RowsPerGroup + i] = rowScales[b];
                if (mins != null)
                    mins[groupBlock * RowsPerGroup + i] = rowMins[b];
            }
        }
        weights.KeepAlive();
        return new Int4RowGroups(rows, cols, symmetric, packed, scales, mins);
    }

    /// <summary>The 4-bit code of weight (row, col).</summary>
    public int Code(int row, int col)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)col, (uint)Cols, nameof(col));
        int inBlock = col % Int4Weights.BlockSize, b = col / Int4Weights.BlockSize, byteIndex = inBlock % 16;
        byte pair = Packed[((row / RowsPerGroup * Blocks + b) * 4 + byteIndex / 4) * 32 + row % RowsPerGroup * 4 + byteIndex % 4];
        return inBlock < 16 ? pair & 0xF : pair >> 4;
    }

    /// <summary>Decodes a row to F32.</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        CheckRow(row);
        if (destination.Length < Cols)
            throw new ArgumentException($"A row needs {Cols} values, got {destination.Length}.", nameof(destination));
        for (int c = 0; c < Cols; c++)
        {
            int at = (row / RowsPerGroup * Blocks + c / Int4Weights.BlockSize) * RowsPerGroup + row % RowsPerGroup;
            float scale = (float)Scales[at];
            destination[c] = Symmetric ? scale * (Code(row, c) - 8) : scale * Code(row, c) + (float)Mins![at];
        }
    }

    // Padding rows of the last group are not rows of the matrix.
    private void CheckRow(int row)
    {
        if ((uint)row >= (uint)Rows)
            throw new ArgumentOutOfRangeException(nameof(row), row, $"The matrix has {Rows} rows.");
    }
}
