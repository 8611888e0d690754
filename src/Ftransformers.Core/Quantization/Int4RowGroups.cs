using System.Runtime.InteropServices;
using Ftransformers.Kernels;
using Ftransformers.Memory;

namespace Ftransformers.Quantization;

/// <summary>
/// Group-32 INT4 weights repacked at load for the row-group kernels (<see cref="Int4RowGroupKernel"/>: AVX2, AVX-512): rows in
/// groups of sixteen, so that one 32-byte load holds four weights of a block from each of sixteen rows, eight in the
/// low nibbles and eight in the high nibbles at the same columns. Four activation codes broadcast to every lane then
/// meet both nibbles, so one broadcast serves sixteen rows, and each row's sum lands in its own lane with no
/// horizontal reduction; a block's scales and mins of eight rows are one vector. Same codes, scales and mins as the
/// row-major <see cref="Int4Weights"/>, so results do not depend on the layout beyond float summation order.
/// <para>
/// Layout: group g holds rows 16g..16g+15 (the last group is padded with zero rows). For block b and quad q (weights
/// 4q..4q+3 of the block, q = 0..7), lane i's four bytes sit at ((g · Blocks + b) · 8 + q) · 32 + 4i: row 16g+i's
/// codes in their low nibbles, row 16g+8+i's in their high nibbles. Scales and mins (F16) of row 16g+j sit at
/// (g · Blocks + b) · 16 + j.
/// </para>
/// </summary>
public sealed unsafe class Int4RowGroups
{
    /// <summary>Rows a group holds: two per 32-bit lane of a 256-bit register, one in each nibble.</summary>
    public const int RowsPerGroup = Int4RowGroupLayout.RowsPerGroup;

    /// <summary>Rows per nibble: one per 32-bit lane.</summary>
    public const int RowsPerHalf = Int4RowGroupLayout.RowsPerHalf;

    private const int QuadsPerBlock = Int4Weights.BlockSize / 4;

    /// <summary>Packed bytes of one block of one group: the kernel's stride.</summary>
    internal const int GroupBlockBytes = Int4RowGroupLayout.GroupBlockBytes;

    private readonly object? _owner;

    /// <summary>Wraps row groups in memory that <paramref name="owner"/> keeps (or that outlives this object when null).</summary>
    internal Int4RowGroups(int rows, int cols, bool symmetric, byte* packed, Half* scales, Half* mins, object? owner)
    {
        (Rows, Cols, Symmetric, _owner) = (rows, cols, symmetric, owner);
        PackedPointer = packed;
        ScalesPointer = scales;
        MinsPointer = symmetric ? null : mins;
    }

    /// <summary>Output features.</summary>
    public int Rows { get; }

    /// <summary>Input features, a multiple of 32.</summary>
    public int Cols { get; }

    /// <summary>Groups of sixteen rows.</summary>
    public int Groups => GroupsOf(Rows);

    /// <summary>Blocks of 32 weights per row.</summary>
    public int Blocks => Cols / Int4Weights.BlockSize;

    /// <summary>No mins: the zero point is 8 (the min is −8 · scale).</summary>
    public bool Symmetric { get; }

    // Pinned or native memory, so that the kernel may take their addresses without fixing them.
    internal byte* PackedPointer { get; }
    internal Half* ScalesPointer { get; }
    internal Half* MinsPointer { get; }

    /// <summary>Packed bytes per group of sixteen rows.</summary>
    internal long GroupBytes => (long)Blocks * GroupBlockBytes;

    /// <summary>The packed bytes, group after group.</summary>
    internal ReadOnlySpan<byte> Packed => new(PackedPointer, checked((int)(Groups * GroupBytes)));

    /// <summary>The block scales, group after group (sixteen per block, padding rows included).</summary>
    internal ReadOnlySpan<Half> Scales => new(ScalesPointer, checked(Groups * GroupParameters));

    /// <summary>The block mins as <see cref="Scales"/>; empty when symmetric.</summary>
    internal ReadOnlySpan<Half> Mins => MinsPointer == null ? default : new(MinsPointer, checked(Groups * GroupParameters));

    /// <summary>The block scales (and mins) of a group: <see cref="Blocks"/> times sixteen.</summary>
    internal int GroupParameters => Blocks * RowsPerGroup;

    /// <summary>The groups as the kernel reads them (this object keeps their memory alive).</summary>
    internal Int4RowGroupLayout Layout => new(PackedPointer, ScalesPointer, MinsPointer, Rows, Cols, this);

    /// <summary>Keeps the memory's owner alive until here, for callers that use raw pointers.</summary>
    internal void KeepAlive() => GC.KeepAlive(_owner);

    /// <summary>Whether <paramref name="weights"/> can be repacked: group size 32, the kernel's block.</summary>
    public static bool Suits(Int4Weights weights) => weights.Format.GroupSize == Int4Weights.BlockSize;

    /// <summary>Repacks <paramref name="weights"/> (group size 32) into row groups.</summary>
    public static Int4RowGroups From(Int4Weights weights)
    {
        if (!Suits(weights))
            throw new ArgumentException($"Row groups need INT4 group size {Int4Weights.BlockSize}, got {weights.Format}.", nameof(weights));
        int rows = weights.Rows, cols = weights.Cols, blocks = cols / Int4Weights.BlockSize;
        int groups = GroupsOf(rows);
        bool symmetric = weights.Format.Symmetric;
        var packed = PinnedArray<byte>.Zeroed(checked(groups * blocks * GroupBlockBytes));
        var scales = PinnedArray<Half>.Zeroed(groups * blocks * RowsPerGroup);
        PinnedArray<Half>? mins = symmetric ? null : PinnedArray<Half>.Zeroed(scales.Length);
        // Rows r and r + 8 of a group share lane i: per block, each row's 16 packed bytes (as four uints: codes j in
        // the low nibbles, j + 16 in the high) become eight uints of quads, row r's codes low and row r + 8's high.
        Span<uint> quads = MemoryMarshal.Cast<byte, uint>(packed.Span);
        for (int g = 0; g < groups; g++)
            for (int i = 0; i < RowsPerHalf; i++)
            {
                int low = g * RowsPerGroup + i, high = low + RowsPerHalf;
                if (low >= rows)
                    break;
                ReadOnlySpan<uint> lowRow = MemoryMarshal.Cast<byte, uint>(weights.PackedRow(low));
                ReadOnlySpan<uint> highRow = high < rows ? MemoryMarshal.Cast<byte, uint>(weights.PackedRow(high)) : new uint[lowRow.Length];
                for (int block = 0; block < blocks; block++)
                {
                    Span<uint> lanes = quads.Slice((g * blocks + block) * QuadsPerBlock * RowsPerHalf, QuadsPerBlock * RowsPerHalf);
                    for (int q = 0; q < 4; q++)
                    {
                        uint l = lowRow[block * 4 + q], h = highRow[block * 4 + q];
                        lanes[q * RowsPerHalf + i] = (l & 0x0F0F_0F0F) | (h & 0x0F0F_0F0F) << 4;
                        lanes[(q + 4) * RowsPerHalf + i] = (l >> 4 & 0x0F0F_0F0F) | (h & 0xF0F0_F0F0);
                    }
                }
                CopyBlockParameters(weights, low, g, i, blocks, scales.Span, mins == null ? default : mins.Span);
                if (high < rows)
                    CopyBlockParameters(weights, high, g, i + RowsPerHalf, blocks, scales.Span, mins == null ? default : mins.Span);
            }
        weights.KeepAlive();
        return new Int4RowGroups(rows, cols, symmetric, packed.Pointer, scales.Pointer, mins == null ? null : mins.Pointer, (packed, scales, mins));
    }

    /// <summary>Bytes of the packed codes of a [<paramref name="rows"/>, <paramref name="cols"/>] matrix in row groups (the last group padded).</summary>
    public static long PackedBytes(int rows, int cols) => (long)GroupsOf(rows) * (cols / Int4Weights.BlockSize) * GroupBlockBytes;

    /// <summary>Block scales (or mins) of a [<paramref name="rows"/>, <paramref name="cols"/>] matrix in row groups, padding rows included.</summary>
    public static long ParameterCount(int rows, int cols) => (long)GroupsOf(rows) * (cols / Int4Weights.BlockSize) * RowsPerGroup;

    /// <summary>Groups of sixteen rows holding <paramref name="rows"/> rows (the last one padded).</summary>
    public static int GroupsOf(int rows) => (rows + RowsPerGroup - 1) / RowsPerGroup;

    /// <summary>The shapes a checkpoint stores row groups in: codes [groups, bytes per group], scales and mins [groups, per group].</summary>
    public static (long[] Codes, long[] Scales) FileShapes(int rows, int cols)
    {
        int groups = GroupsOf(rows);
        return ([groups, PackedBytes(rows, cols) / groups], [groups, ParameterCount(rows, cols) / groups]);
    }

    /// <summary>
    /// Row groups over memory laid out as <see cref="From"/> lays it (a converted checkpoint's, mapped), which
    /// <paramref name="owner"/> keeps alive: no copy.
    /// </summary>
    internal static Int4RowGroups Over(int rows, int cols, bool symmetric, byte* packed, Half* scales, Half* mins, object owner)
    {
        if (rows < 1 || cols < Int4Weights.BlockSize || cols % Int4Weights.BlockSize != 0)
            throw new ArgumentException($"Row groups need a positive row count and a column count that is a multiple of {Int4Weights.BlockSize}; got [{rows}, {cols}].");
        if ((mins == null) != symmetric)
            throw new ArgumentException($"Row groups {(symmetric ? "of a symmetric format have no" : "need")} mins.");
        return new Int4RowGroups(rows, cols, symmetric, packed, scales, mins, owner);
    }

    /// <summary>The same codes, scales and mins row after row (<see cref="Int4Weights"/>, group size 32), for CPUs without the row-group kernels.</summary>
    public Int4Weights ToWeights()
    {
        int blocks = Blocks;
        var packed = PinnedArray<byte>.Zeroed(checked(Rows * Cols / 2));
        var scales = PinnedArray<Half>.Zeroed(checked(Rows * blocks));
        PinnedArray<Half>? mins = Symmetric ? null : PinnedArray<Half>.Zeroed(scales.Length);
        // The inverse of From: lane i of quad q holds row r's nibbles low and row r + 8's high, quads q and q + 4 together
        // a row's four bytes of codes j (low nibbles) and j + 16 (high).
        ReadOnlySpan<uint> quads = MemoryMarshal.Cast<byte, uint>(Packed);
        Span<uint> rows = MemoryMarshal.Cast<byte, uint>(packed.Span);
        int rowQuads = Cols / 8;
        for (int g = 0; g < Groups; g++)
            for (int i = 0; i < RowsPerHalf; i++)
            {
                int low = g * RowsPerGroup + i, high = low + RowsPerHalf;
                if (low >= Rows)
                    break;
                for (int block = 0; block < blocks; block++)
                {
                    ReadOnlySpan<uint> lanes = quads.Slice((g * blocks + block) * QuadsPerBlock * RowsPerHalf, QuadsPerBlock * RowsPerHalf);
                    for (int q = 0; q < 4; q++)
                    {
                        uint a = lanes[q * RowsPerHalf + i], b = lanes[(q + 4) * RowsPerHalf + i];
                        rows[low * rowQuads + block * 4 + q] = (a & 0x0F0F_0F0F) | (b & 0x0F0F_0F0F) << 4;
                        if (high < Rows)
                            rows[high * rowQuads + block * 4 + q] = (a >> 4 & 0x0F0F_0F0F) | (b & 0xF0F0_F0F0);
                    }
                }
            }
        for (int row = 0; row < Rows; row++)
            for (int block = 0; block < blocks; block++)
            {
                int at = ParameterIndex(row, block);
                scales.Span[row * blocks + block] = ScalesPointer[at];
                if (mins != null)
                    mins.Span[row * blocks + block] = MinsPointer[at];
            }
        KeepAlive();
        return Int4Weights.FromOwned(Rows, Cols, new Int4Format(Int4Weights.BlockSize, Symmetric), packed, scales, mins);
    }

    private static void CopyBlockParameters(Int4Weights weights, int row, int g, int j, int blocks, Span<Half> scales, Span<Half> mins)
    {
        ReadOnlySpan<Half> rowScales = weights.ScalesRow(row), rowMins = weights.MinsRow(row);
        for (int b = 0; b < blocks; b++)
        {
            scales[(g * blocks + b) * RowsPerGroup + j] = rowScales[b];
            if (!mins.IsEmpty)
                mins[(g * blocks + b) * RowsPerGroup + j] = rowMins[b];
        }
    }

    /// <summary>The 4-bit code of weight (row, col).</summary>
    public int Code(int row, int col)
    {
        CheckRow(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)col, (uint)Cols, nameof(col));
        int inBlock = col % Int4Weights.BlockSize, b = col / Int4Weights.BlockSize, j = row % RowsPerGroup;
        byte pair = PackedPointer[((row / RowsPerGroup * Blocks + b) * QuadsPerBlock + inBlock / 4) * 32 + j % RowsPerHalf * 4 + inBlock % 4];
        return j < RowsPerHalf ? pair & 0xF : pair >> 4;
    }

    /// <summary>Decodes a row to F32.</summary>
    public void DequantizeRow(int row, Span<float> destination)
    {
        CheckRow(row);
        if (destination.Length < Cols)
            throw new ArgumentException($"A row needs {Cols} values, got {destination.Length}.", nameof(destination));
        for (int c = 0; c < Cols; c++)
        {
            int at = ParameterIndex(row, c / Int4Weights.BlockSize);
            float scale = (float)ScalesPointer[at];
            destination[c] = Symmetric ? scale * (Code(row, c) - 8) : scale * Code(row, c) + (float)MinsPointer[at];
        }
    }

    // Where the scale (and min) of a row's block sits: sixteen per block of a group, row after row.
    private int ParameterIndex(int row, int block) => (row / RowsPerGroup * Blocks + block) * RowsPerGroup + row % RowsPerGroup;

    // Padding rows of the last group are not rows of the matrix.
    private void CheckRow(int row)
    {
        if ((uint)row >= (uint)Rows)
            throw new ArgumentOutOfRangeException(nameof(row), row, $"The matrix has {Rows} rows.");
    }
}
