namespace Ftransformers.Kernels;

/// <summary>
/// Group-32 INT4 weights in groups of sixteen rows, as <see cref="Int4RowGroupsAvx2"/> reads them: for block b and
/// quad q (weights 4q..4q+3 of the block), lane i's four bytes of group g sit at ((g · Blocks + b) · 8 + q) · 32 + 4i,
/// row 16g+i's codes in their low nibbles and row 16g+8+i's in their high nibbles; the F16 scales and mins of row
/// 16g+j sit at (g · Blocks + b) · 16 + j. <see cref="Owner"/> keeps the memory alive.
/// </summary>
public readonly unsafe struct Int4RowGroupLayout
{
    /// <summary>Rows a group holds: two per 32-bit lane of a 256-bit register, one in each nibble.</summary>
    public const int RowsPerGroup = 16;

    /// <summary>Rows per nibble: one per 32-bit lane.</summary>
    public const int RowsPerHalf = RowsPerGroup / 2;

    /// <summary>Packed bytes of one block of one group: the kernel's stride.</summary>
    public const int GroupBlockBytes = RowsPerGroup * Int4Layout.BlockSize / 2;

    /// <summary>Describes memory that <paramref name="owner"/> keeps (or that outlives every use when null); <paramref name="mins"/> is null when symmetric.</summary>
    public Int4RowGroupLayout(byte* packed, Half* scales, Half* mins, int rows, int cols, object? owner)
    {
        Packed = packed;
        Scales = scales;
        Mins = mins;
        Rows = rows;
        Cols = cols;
        Owner = owner;
    }

    /// <summary>The packed nibbles, group after group.</summary>
    public byte* Packed { get; }
    /// <summary>The block scales, group after group.</summary>
    public Half* Scales { get; }
    /// <summary>The block mins; null when symmetric (zero point 8).</summary>
    public Half* Mins { get; }
    /// <summary>Output features.</summary>
    public int Rows { get; }
    /// <summary>Input features, a multiple of 32.</summary>
    public int Cols { get; }
    /// <summary>What keeps the memory alive; kernels hold it until they return.</summary>
    public object? Owner { get; }

    /// <summary>Blocks of 32 weights per row.</summary>
    public int Blocks => Cols / Int4Layout.BlockSize;
    /// <summary>Groups of sixteen rows.</summary>
    public int Groups => (Rows + RowsPerGroup - 1) / RowsPerGroup;
    /// <summary>No mins: the zero point is 8.</summary>
    public bool Symmetric => Mins == null;
}
