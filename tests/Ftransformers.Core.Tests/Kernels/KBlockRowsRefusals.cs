using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

/// <summary>What a GGUF block kernel (<see cref="Q4KRows"/>, <see cref="Q6KRows"/>) must refuse, asserted once for both.</summary>
internal static class KBlockRowsRefusals
{
    /// <summary>
    /// Asserts that <paramref name="rows"/> (the kernel's path-taking entry) refuses mismatched operands against
    /// <paramref name="layout"/> (2 rows of 256 columns), blocks of <paramref name="otherFormat"/>, and
    /// <paramref name="missingPath"/>, a path the kernel lacks.
    /// </summary>
    public static unsafe void AssertRefused(KBlockLayout layout, KBlockFormat otherFormat, KernelPath missingPath, Action<KernelPath, KBlockLayout, int, int, Int8Activations, float[]> rows)
    {
        KernelPath path = KernelPath.Scalar;
        var perToken = new Int8Activations();
        perToken.QuantizePerToken(new float[256], 1, 256);
        Assert.Throws<ArgumentException>(() => rows(path, layout, 0, 2, perToken, new float[2]), "activations per token");
        var narrow = new Int8Activations();
        narrow.QuantizePerBlock(new float[128], 1, 128);
        Assert.Throws<ArgumentException>(() => rows(path, layout, 0, 2, narrow, new float[2]), "activations of another width");
        var x = new Int8Activations();
        x.QuantizePerBlock(new float[256], 1, 256);
        Assert.Throws<ArgumentException>(() => rows(path, layout, 0, 2, x, new float[1]), "a short output");
        Assert.Throws<ArgumentOutOfRangeException>(() => rows(path, layout, 1, 3, x, new float[3]), "rows beyond the matrix");
        Assert.Throws<PlatformNotSupportedException>(() => rows(missingPath, layout, 0, 2, x, new float[2]), "a path the kernel lacks");
        var other = new KBlockLayout(otherFormat, layout.Blocks, 1, 256, null);
        Assert.Throws<ArgumentException>(() => rows(path, other, 0, 1, x, new float[1]), "blocks of another format");
        Assert.Throws<ArgumentException>(() => new KBlockLayout(layout.Format, layout.Blocks, 1, 300, null), "columns not whole blocks");
    }
}
