using Ftransformers.Kernels;
using Ftransformers.Model;
using Ftransformers.Quantization;
using Ftransformers.Tests.Kernels;
using NUnit.Framework;
using Ftransformers.Threading;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class Int4WeightMatrixTests
{
    // INT4 weight matrices take the row-group kernel wherever it runs, for group size 32 only.
    [TestCase(32, true)]
    [TestCase(128, false)]
    public void Construction_RepacksGroupSize32_WhereTheRowGroupKernelRuns(int groupSize, bool repacks)
    {
        Int4Weights weights = Int4Quantizer.Quantize(new float[16 * 256], 16, 256, new Int4Format(groupSize, false));
        Assert.That(new Int4WeightMatrix("w", weights).UsesRowGroups, Is.EqualTo(repacks && Int4RowGroupsAvx2.IsSupported));
    }

    // The pool splits rows in units of whole row groups; every output is the float64 product of the kernel's operands,
    // whichever layout the matrix holds, and its rows decode as the row-major weights do.
    [TestCase(37, 5)]
    [TestCase(8, 1)]
    [TestCase(64, 9)]
    [TestCase(200, 4)]
    public void Multiply_OnThePool_AndCopyRow_MatchTheRowMajorWeights(int rows, int tokens)
    {
        const int cols = 256;
        var rng = new Random(rows + tokens);
        float[] w = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        Int4Weights rowMajor = Int4Quantizer.Quantize(w, rows, cols, Int4Format.Default);
        using var pool = new ComputePool(2, pin: false);
        var matrix = new Int4WeightMatrix("w", rowMajor) { Pool = pool };
        var y = new float[tokens * rows];
        matrix.Multiply(x, y, tokens);

        var act = new Int8Activations();
        act.QuantizePerBlock(x, tokens, cols);
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < tokens; t++)
                Int4Float64.AssertRowDot(y[t * rows + r], rowMajor, r, act, t);

        float[] expected = new float[cols], actual = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            rowMajor.DequantizeRow(r, expected);
            matrix.CopyRow(r, actual);
            Assert.That(actual, Is.EqualTo(expected), $"row {r}");
        }
    }
}
