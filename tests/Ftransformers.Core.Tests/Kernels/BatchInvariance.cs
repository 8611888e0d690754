using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

/// <summary>Batched decoding must equal each request alone: a kernel's bits for a token may not depend on the tokens beside it.</summary>
internal static class BatchInvariance
{
    /// <summary>
    /// Runs <paramref name="rowsOf"/> (all rows, inputs quantized per block of 32, outputs [tokens, rows]) once over
    /// <paramref name="tokens"/> random tokens and once per token alone, and asserts the same bits.
    /// </summary>
    public static void AssertEachTokenAlone(int rows, int cols, int tokens, Random rng, Action<Int8Activations, float[]> rowsOf)
    {
        float[] values = Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray();
        var all = new Int8Activations();
        all.QuantizePerBlock(values, tokens, cols);
        var y = new float[tokens * rows];
        rowsOf(all, y);
        var alone = new Int8Activations();
        var one = new float[rows];
        for (int t = 0; t < tokens; t++)
        {
            alone.QuantizePerBlock(values.AsSpan(t * cols, cols), 1, cols);
            rowsOf(alone, one);
            Assert.That(one, Is.EqualTo(y.AsSpan(t * rows, rows).ToArray()), $"token {t}");
        }
    }
}
