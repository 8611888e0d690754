using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Bf16RowsTests
{
    private static readonly KernelPath[] Paths = [KernelPath.Scalar, KernelPath.Vector128, KernelPath.Avx2, KernelPath.Avx512];

    private static void Require(KernelPath path)
    {
        if (!Bf16Rows.IsSupported(path))
            Assert.Ignore($"{path} is not supported on this CPU ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}).");
    }

    private static (ushort[] W, float[] X) RandomInputs(int rows, int cols, int tokens, int seed)
    {
        var rng = new Random(seed);
        var w = new ushort[rows * cols];
        var x = new float[tokens * cols];
        for (int i = 0; i < w.Length; i++)
            w[i] = BFloat16.FromSingle((float)(rng.NextDouble() * 4 - 2));
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(rng.NextDouble() * 4 - 2);
        return (w, x);
    }

    private static float[] Multiply(KernelPath path, ushort[] w, float[] x, int cols, int tokens, int yStride)
    {
        var paired = new float[x.Length];
        Bf16Rows.PairOn(path, x, cols, paired);
        var y = new float[tokens * yStride];
        Bf16Rows.MultiplyOn(path, w, cols, paired, tokens, y, yStride);
        return y;
    }

    private static IEnumerable<TestCaseData> Shapes() =>
        from path in Paths
        from shape in new[] { (1, 1, 1), (3, 7, 2), (4, 8, 4), (5, 33, 5), (9, 64, 3), (6, 100, 9), (13, 257, 7), (8, 1024, 1) }
        select new TestCaseData(path, shape.Item1, shape.Item2, shape.Item3);

    [TestCaseSource(nameof(Shapes))]
    public void Multiply_EqualsFloat64Products(KernelPath path, int rows, int cols, int tokens)
    {
        Require(path);
        (ushort[] w, float[] x) = RandomInputs(rows, cols, tokens, seed: rows * 1000 + cols);
        int yStride = rows + 3; // outputs of a row range inside a wider matrix
        float[] y = Multiply(path, w, x, cols, tokens, yStride);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                double exact = 0, magnitude = 0;
                for (int c = 0; c < cols; c++)
                {
                    double product = (double)BFloat16.ToSingle(w[r * cols + c]) * x[t * cols + c];
                    exact += product;
                    magnitude += Math.Abs(product);
                }
                // F32 accumulation: each of at most cols roundings is within 2^-24 of the running magnitude.
                Assert.That(y[t * yStride + r], Is.EqualTo(exact).Within(cols * magnitude * Math.Pow(2, -24) + 1e-30), $"row {r}, token {t}");
            }
    }

    [TestCaseSource(nameof(Shapes))]
    public void Multiply_GivesEachTokenTheSameBits_WhateverTokensShareItsTile(KernelPath path, int rows, int cols, int tokens)
    {
        Require(path);
        (ushort[] w, float[] x) = RandomInputs(rows, cols, tokens, seed: 7 + cols);
        float[] together = Multiply(path, w, x, cols, tokens, rows);
        for (int t = 0; t < tokens; t++)
        {
            float[] alone = Multiply(path, w, x[(t * cols)..((t + 1) * cols)], cols, 1, rows);
            Assert.That(together.AsSpan(t * rows, rows).ToArray(), Is.EqualTo(alone), $"token {t}");
        }
    }

    [TestCaseSource(nameof(PathsAndWidths))]
    public void Pair_PutsEachBlocksEvenValuesFirst_AndWorksInPlace(KernelPath path, int cols)
    {
        Require(path);
        const int tokens = 3;
        float[] x = [.. Enumerable.Range(0, tokens * cols).Select(i => (float)i)];
        var paired = new float[x.Length];
        Bf16Rows.PairOn(path, x, cols, paired);
        int block = Bf16Rows.PairBlock(path), whole = block == 0 ? 0 : cols / block * block;
        for (int t = 0; t < tokens; t++)
            for (int c = 0; c < cols; c++)
            {
                int expected = c >= whole ? c : c - c % block + (c % block < block / 2 ? 2 * (c % block) : 2 * (c % block - block / 2) + 1);
                Assert.That(paired[t * cols + c], Is.EqualTo(t * cols + expected), $"token {t}, column {c}");
            }
        float[] inPlace = [.. x];
        Bf16Rows.PairOn(path, inPlace, cols, inPlace);
        Assert.That(inPlace, Is.EqualTo(paired));
    }

    private static IEnumerable<TestCaseData> PathsAndWidths() =>
        from path in Paths from cols in new[] { 1, 8, 20, 32, 75 } select new TestCaseData(path, cols);

    [Test]
    public void Multiply_RefusesMismatchedShapes()
    {
        var w = new ushort[12];
        Assert.Throws<ArgumentException>(() => Bf16Rows.Multiply(w, 5, new float[5], 1, new float[3], 3), "12 weights are not whole rows of 5");
        Assert.Throws<ArgumentException>(() => Bf16Rows.Multiply(w, 4, new float[7], 2, new float[6], 3), "2 tokens need 8 inputs");
        Assert.Throws<ArgumentException>(() => Bf16Rows.Multiply(w, 4, new float[8], 2, new float[5], 3), "2 tokens of 3 outputs need 6");
    }

    [Test]
    public void Dispatch_TakesTheWidestVectors()
    {
        KernelPath expected = Avx512F.IsSupported && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? KernelPath.Avx512
            : Avx2.IsSupported ? KernelPath.Avx2
            : AdvSimd.IsSupported ? KernelPath.Vector128
            : KernelPath.Scalar;
        Assert.That(Bf16Rows.ActivePath, Is.EqualTo(expected));
    }

    [Test]
    public void TokensPerPass_KeepsPairedInputsNearHalfAMegabyte()
    {
        Assert.That(Bf16Rows.TokensPerPass(7168), Is.EqualTo(16));
        Assert.That(Bf16Rows.TokensPerPass(2048), Is.EqualTo(64));
        Assert.That(Bf16Rows.TokensPerPass(1 << 20), Is.EqualTo(4));
    }
}
