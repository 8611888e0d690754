using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public unsafe class AttentionBlocksTests
{
    private static readonly int Block = AttentionBlocks.BlockPositions;

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    [Test]
    public void Scores_MatchFloat64Dots([Values(1, 3, 4, 5, 6, 7, 11, 13)] int rows, [Values(1, 5, 64, 576)] int width)
    {
        const float scale = 0.125f;
        const int queryStride = 600, scoreStride = 70;
        float[] queries = Random(rows * queryStride, rows * 100 + width), transposed = Random(width * Block, width);
        float[] scores = new float[rows * scoreStride];
        fixed (float* q = queries, t = transposed, s = scores)
            AttentionBlocks.Scores(q, rows, queryStride, t, width, scale, s, scoreStride);
        for (int r = 0; r < rows; r++)
            for (int p = 0; p < Block; p++)
            {
                double dot = 0, magnitude = 0;
                for (int k = 0; k < width; k++)
                {
                    dot += (double)queries[r * queryStride + k] * transposed[k * Block + p];
                    magnitude += Math.Abs((double)queries[r * queryStride + k] * transposed[k * Block + p]);
                }
                Assert.That(scores[r * scoreStride + p], Is.EqualTo(dot * scale).Within(magnitude * scale * 1e-6 + 1e-12), $"row {r}, position {p}");
            }
    }

    [Test]
    public void Accumulate_AddsFloat64WeightedSums([Values(1, 2, 3, 4, 7)] int rows, [Values(1, 3, 32, 40, 512)] int rank)
    {
        const int weightStride = 50, latentStride = 530, contextStride = 520;
        float[] weights = Random(rows * weightStride, rows), latents = Random(Block * latentStride, rank), contexts = Random(rows * contextStride, rank + rows);
        float[] before = (float[])contexts.Clone();
        fixed (float* w = weights, l = latents, c = contexts)
            AttentionBlocks.Accumulate(w, rows, weightStride, l, latentStride, rank, c, contextStride);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < rank; i++)
            {
                double sum = before[r * contextStride + i], magnitude = Math.Abs(sum);
                for (int p = 0; p < Block; p++)
                {
                    sum += (double)weights[r * weightStride + p] * latents[p * latentStride + i];
                    magnitude += Math.Abs((double)weights[r * weightStride + p] * latents[p * latentStride + i]);
                }
                Assert.That(contexts[r * contextStride + i], Is.EqualTo(sum).Within(magnitude * 1e-6), $"row {r}, column {i}");
            }
        for (int r = 0; r < rows; r++)
            Assert.That(contexts.AsSpan(r * contextStride + rank, contextStride - rank).ToArray(), Is.EqualTo(before.AsSpan(r * contextStride + rank, contextStride - rank).ToArray()), "columns past the rank are untouched");
    }

    // Batched decoding must equal each request alone: a row's result may not depend on how many rows share its tile.
    [Test]
    public void EachRow_GetsTheSameBits_WhateverRowsShareItsTile()
    {
        const int rows = 13, width = 97, rank = 72;
        float[] queries = Random(rows * width, 1), transposed = Random(width * Block, 2), latents = Random(Block * rank, 3), weights = Random(rows * Block, 4);
        float[] scores = new float[rows * Block], one = new float[Block];
        float[] contexts = new float[rows * rank], alone = new float[rank];
        fixed (float* q = queries, t = transposed, s = scores, o = one, l = latents, w = weights, c = contexts, a = alone)
        {
            AttentionBlocks.Scores(q, rows, width, t, width, 0.5f, s, Block);
            AttentionBlocks.Accumulate(w, rows, Block, l, rank, rank, c, rank);
            for (int r = 0; r < rows; r++)
            {
                AttentionBlocks.Scores(q + r * width, 1, width, t, width, 0.5f, o, Block);
                Assert.That(one, Is.EqualTo(scores.AsSpan(r * Block, Block).ToArray()), $"scores of row {r}");
                Array.Clear(alone);
                AttentionBlocks.Accumulate(w + r * Block, 1, Block, l, rank, rank, a, rank);
                Assert.That(alone, Is.EqualTo(contexts.AsSpan(r * rank, rank).ToArray()), $"context of row {r}");
            }
        }
    }
}
