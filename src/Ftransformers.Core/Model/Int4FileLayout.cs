using Ftransformers.Kernels;

namespace Ftransformers.Model;

/// <summary>How a converted checkpoint lays out its INT4 matrices (of group size 32).</summary>
public enum Int4FileLayout
{
    /// <summary>Row after row (<c>X.qweight</c>, <c>X.scales</c>, <c>X.mins</c>): what the ARM64 and portable kernels read in place.</summary>
    Rows,
    /// <summary>Groups of sixteen rows interleaved (<c>X.qweight_rg</c>, <c>X.scales_rg</c>, <c>X.mins_rg</c>): what the x86 AVX2 and AVX-512 kernels read in place.</summary>
    RowGroups,
}

/// <summary>Which <see cref="Int4FileLayout"/> this machine's kernels read.</summary>
public static class Int4FileLayouts
{
    /// <summary>Row groups where the row-group kernels run (x86 with AVX2), rows elsewhere.</summary>
    public static Int4FileLayout ForThisCpu => Int4RowGroupKernel.IsSupported ? Int4FileLayout.RowGroups : Int4FileLayout.Rows;
}
