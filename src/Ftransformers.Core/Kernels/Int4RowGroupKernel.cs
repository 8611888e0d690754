namespace Ftransformers.Kernels;

/// <summary>
/// The INT4 kernel over <see cref="Int4RowGroupLayout"/> this CPU runs: AVX-512 (<see cref="Int4RowGroupsAvx512"/>)
/// where the CPU has F and BW, else AVX2 (<see cref="Int4RowGroupsAvx2"/>). Both give the same bits.
/// </summary>
public static class Int4RowGroupKernel
{
    /// <summary>Whether any row-group kernel runs here (weight matrices repack into row groups only then).</summary>
    public static bool IsSupported => Int4RowGroupsAvx2.IsSupported;

    /// <summary>The path <see cref="Rows"/> takes on this CPU; <see cref="KernelPath.Scalar"/> when none runs.</summary>
    public static KernelPath ActivePath { get; } =
        Int4RowGroupsAvx512.IsSupported ? KernelPath.Avx512
        : Int4RowGroupsAvx2.IsSupported ? KernelPath.Avx2
        : KernelPath.Scalar;

    /// <summary>Rows the active kernel takes at once (two groups on AVX-512): ranges cut at multiples of it lose nothing.</summary>
    public static int RowsPerPass { get; } = ActivePath == KernelPath.Avx512 ? 2 * Int4RowGroupLayout.RowsPerGroup : Int4RowGroupLayout.RowsPerGroup;

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) for every token: y[t * weights.Rows + r] = row r · token t.
    /// </summary>
    public static void Rows(in Int4RowGroupLayout weights, int start, int end, Int8Activations x, Span<float> y) =>
        RowsOn(ActivePath, weights, start, end, x, y);

    /// <summary><see cref="Rows"/> on a chosen path (tests and benchmarks; the CPU must support it).</summary>
    internal static void RowsOn(KernelPath path, in Int4RowGroupLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        switch (path)
        {
            case KernelPath.Avx512: Int4RowGroupsAvx512.Rows(weights, start, end, x, y); break;
            case KernelPath.Avx2: Int4RowGroupsAvx2.Rows(weights, start, end, x, y); break;
            default: throw new PlatformNotSupportedException($"No row-group INT4 kernel takes the {path} path; this CPU's is {ActivePath}.");
        }
    }
}
