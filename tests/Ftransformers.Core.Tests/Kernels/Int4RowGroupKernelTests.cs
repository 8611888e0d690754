using Ftransformers.Kernels;
using Ftransformers.Quantization;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int4RowGroupKernelTests
{
    private static readonly KernelPath[] Paths = [KernelPath.Avx2, KernelPath.Avx512];

    private static IEnumerable<TestCaseData> Cases() =>
        from path in Paths
        from symmetric in new[] { false, true }
        from shape in new[] { (Rows: 16, Cols: 32), (Rows: 13, Cols: 224), (Rows: 37, Cols: 800), (Rows: 3, Cols: 96), (Rows: 64, Cols: 160) }
        from tokens in new[] { 1, 2, 3, 4, 5, 7, 9, 16, 19 }
        select new TestCaseData(path, symmetric, shape.Rows, shape.Cols, tokens);

    // The row-group kernels exist on x86 only; elsewhere (ARM64 under qemu) these tests are reported as skipped.
    private static void RequireKernel(KernelPath path)
    {
        KernelPaths.Require(path);
        if (!Int4RowGroupKernel.IsSupported)
            Assert.Ignore($"The row-group kernels need AVX2 and FMA, which this CPU ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}) lacks.");
    }

    private static (Int4Weights RowMajor, Int4RowGroups Groups, Int8Activations X) Operands(bool symmetric, int rows, int cols, int tokens, int seed)
    {
        var rng = new Random(seed);
        float[] w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1.2)).ToArray();
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        Int4Weights rowMajor = Int4Quantizer.Quantize(w, rows, cols, new Int4Format(32, symmetric));
        var act = new Int8Activations();
        act.QuantizePerBlock(x, tokens, cols);
        return (rowMajor, Int4RowGroups.From(rowMajor), act);
    }

    [TestCaseSource(nameof(Cases))]
    public void Rows_MatchFloat64OfTheDequantizedOperands(KernelPath path, bool symmetric, int rows, int cols, int tokens)
    {
        RequireKernel(path);
        (Int4Weights rowMajor, Int4RowGroups groups, Int8Activations act) = Operands(symmetric, rows, cols, tokens, rows * 1000 + cols + tokens);
        var y = new float[tokens * rows];
        Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, rows, act, y);

        for (int r = 0; r < rows; r++)
            for (int t = 0; t < tokens; t++)
                Int4Float64.AssertRowDot(y[t * rows + r], rowMajor, r, act, t);
    }

    // Ranges that split groups, as the compute pool may: each writes its rows only, with the values of the whole product.
    private static IEnumerable<TestCaseData> Ranges() =>
        from path in Paths
        from range in new[] { (0, 5, 3), (3, 11, 3), (3, 11, 4), (8, 16, 7), (12, 30, 4), (12, 30, 9), (33, 37, 4), (6, 6, 3), (5, 60, 11), (16, 49, 8) }
        select new TestCaseData(path, range.Item1, range.Item2, range.Item3);

    [TestCaseSource(nameof(Ranges))]
    public void Rows_OfAnyRange_WriteThatRangeOnly_WithTheWholeProductsValues(KernelPath path, int start, int end, int tokens)
    {
        RequireKernel(path);
        const int rows = 61, cols = 160;
        (_, Int4RowGroups groups, Int8Activations act) = Operands(false, rows, cols, tokens, 11);
        var whole = new float[tokens * rows];
        Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, rows, act, whole);
        var part = Enumerable.Repeat(float.NaN, tokens * rows).ToArray();
        Int4RowGroupKernel.RowsOn(path, groups.Layout, start, end, act, part);
        for (int t = 0; t < tokens; t++)
            for (int r = 0; r < rows; r++)
            {
                float value = part[t * rows + r];
                if (r >= start && r < end)
                    Assert.That(value, Is.EqualTo(whole[t * rows + r]), $"{path}: row {r}, token {t}");
                else
                    Assert.That(value, Is.NaN, $"{path}: row {r}, token {t} is outside [{start}, {end})");
            }
    }

    // Batched decoding must equal each request alone: a token's result may not depend on how many share its pass.
    [Test]
    public void Rows_GiveEachTokenTheSameBits_WhateverTokensShareItsPass([ValueSource(nameof(Paths))] KernelPath path)
    {
        RequireKernel(path);
        const int rows = 40, cols = 256, tokens = 15;
        (_, Int4RowGroups groups, Int8Activations all) = Operands(false, rows, cols, tokens, 5);
        var y = new float[tokens * rows];
        Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, rows, all, y);
        var alone = new Int8Activations();
        var one = new float[rows];
        for (int t = 0; t < tokens; t++)
        {
            float[] x = Enumerable.Range(0, cols).Select(c => all.Scales(t)[c / 32] * all.Values(t)[c]).ToArray();
            alone.QuantizePerBlock(x, 1, cols);
            Assert.That(alone.Values(0).ToArray(), Is.EqualTo(all.Values(t).ToArray()), "requantizing the dequantized codes is exact");
            Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, rows, alone, one);
            Assert.That(one, Is.EqualTo(y.AsSpan(t * rows, rows).ToArray()), $"token {t}");
        }
    }

    // The AVX-512 kernel takes groups in pairs and hands a leftover group to the AVX2 kernel: both give the same bits.
    [Test]
    public void Avx512_GivesTheBitsOfAvx2([Values(1, 4, 8, 13)] int tokens)
    {
        RequireKernel(KernelPath.Avx512);
        const int rows = 83, cols = 448;
        (_, Int4RowGroups groups, Int8Activations act) = Operands(false, rows, cols, tokens, 17);
        float[] avx2 = new float[tokens * rows], avx512 = new float[tokens * rows];
        Int4RowGroupKernel.RowsOn(KernelPath.Avx2, groups.Layout, 0, rows, act, avx2);
        Int4RowGroupKernel.RowsOn(KernelPath.Avx512, groups.Layout, 0, rows, act, avx512);
        Assert.That(avx512, Is.EqualTo(avx2));
    }

    [Test]
    public void Dispatch_PicksTheWidestPathThisCpuRuns()
    {
        RequireKernel(KernelPath.Avx2);
        Assert.That(Int4RowGroupKernel.ActivePath, Is.EqualTo(KernelPaths.IsSupported(KernelPath.Avx512) ? KernelPath.Avx512 : KernelPath.Avx2));
    }

    // Every code at 0 or 15 against every activation code at ±127: the largest int16 sums a lane can hold.
    [Test]
    public void Rows_OfExtremeCodes_AreExact([ValueSource(nameof(Paths))] KernelPath path, [Values(0, 15)] int code, [Values(1, -1)] int sign)
    {
        RequireKernel(path);
        const int rows = 41, cols = 7168 + 96, tokens = 9;
        byte[] packed = Enumerable.Repeat((byte)(code | code << 4), rows * cols / 2).ToArray();
        Half[] scales = Enumerable.Repeat((Half)0.5f, rows * cols / 32).ToArray(), mins = Enumerable.Repeat((Half)(-1f), rows * cols / 32).ToArray();
        Int4RowGroups groups = Int4RowGroups.From(Int4Weights.CopyOf(rows, cols, Int4Format.Default, packed, scales, mins));
        var act = new Int8Activations();
        act.QuantizePerBlock(Enumerable.Repeat(sign * 2f, tokens * cols).ToArray(), tokens, cols);
        var y = new float[tokens * rows];
        Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, rows, act, y);
        double expected = cols * (0.5 * code - 1) * 2 * sign;
        Assert.That(y, Is.All.EqualTo(expected).Within(Math.Abs(expected) * 1e-6));
    }

    [Test]
    public void Rows_RefuseMismatchedActivationsAndRanges([ValueSource(nameof(Paths))] KernelPath path)
    {
        RequireKernel(path);
        (_, Int4RowGroups groups, Int8Activations act) = Operands(false, 8, 64, 1, 3);
        var wide = new Int8Activations();
        wide.QuantizePerBlock(new float[96], 1, 96);
        Assert.That(() => Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, 8, wide, new float[8]), Throws.ArgumentException.With.Message.Contains("64 values"));
        Assert.That(() => Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, 9, act, new float[9]), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => Int4RowGroupKernel.RowsOn(path, groups.Layout, 0, 8, act, new float[7]), Throws.ArgumentException.With.Message.Contains("output"));
    }
}
