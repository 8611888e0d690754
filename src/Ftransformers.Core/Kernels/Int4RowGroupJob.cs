using System.Runtime.Intrinsics;

namespace Ftransformers.Kernels;

/// <summary>
/// One call's operands for the row-group INT4 kernels (<see cref="Int4RowGroupsAvx2"/>, <see cref="Int4RowGroupsAvx512"/>):
/// the weights, every token's codes, block scales and scaled sums (pinned by the caller), the output rows, the range,
/// and scratch for a pass's float sums, which each kernel reads as its own vector width.
/// </summary>
internal readonly unsafe struct Int4RowGroupJob(in Int4RowGroupLayout weights, sbyte* codes, float* scales, float* sums, float* y, float* passSums, int start, int end)
{
    public readonly byte* Packed = weights.Packed;
    public readonly Half* Scales = weights.Scales;
    public readonly Half* Mins = weights.Mins;
    public readonly sbyte* Codes = codes;
    public readonly float* XScales = scales, XSums = sums, Y = y, PassSums = passSums;
    public readonly int Rows = weights.Rows, Cols = weights.Cols, Blocks = weights.Blocks, Start = start, End = end;

    /// <summary>Refuses activations of another width or block size, a range outside the rows, a short output.</summary>
    public static void CheckOperands(in Int4RowGroupLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (x.Cols != weights.Cols || x.BlockSize != Int4Layout.BlockSize)
            throw new ArgumentException($"Activations must be {weights.Cols} values per token in blocks of {Int4Layout.BlockSize}, got {x.Cols} in blocks of {x.BlockSize}.", nameof(x));
        if ((uint)start > (uint)end || end > weights.Rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {weights.Rows} rows.");
        if (y.Length < (x.Tokens - 1) * weights.Rows + end)
            throw new ArgumentException($"The output needs {x.Tokens} x {weights.Rows} values.", nameof(y));
    }

    /// <summary>
    /// Token <paramref name="t"/>'s results of group <paramref name="g"/>, eight low-nibble rows and eight high, into
    /// its output row: those within the range only, so that ranges may split a group.
    /// </summary>
    public void StoreGroup(int t, int g, float* low, float* high)
    {
        int first = g * Int4RowGroupLayout.RowsPerGroup;
        float* y = Y + (long)t * Rows + first;
        if (first >= Start && first + Int4RowGroupLayout.RowsPerGroup <= End)
        {
            Vector256.Load(low).Store(y);
            Vector256.Load(high).Store(y + Int4RowGroupLayout.RowsPerHalf);
            return;
        }
        for (int i = Math.Max(0, Start - first); i < Int4RowGroupLayout.RowsPerGroup && first + i < End; i++)
            y[i] = i < Int4RowGroupLayout.RowsPerHalf ? low[i] : high[i - Int4RowGroupLayout.RowsPerHalf];
    }
}
