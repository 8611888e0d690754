using System.Runtime.Intrinsics;
using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public unsafe class AttentionBlocksTests
{
    // The 512-bit tiles, and the Vector<T> tiles under the name of their width (256-bit with AVX2, 128-bit NEON).
    private static readonly KernelPath[] Paths = [KernelPath.Avx512, KernelPath.Avx2, KernelPath.Vector128];

    private static void Require(KernelPath path)
    {
        if (!AttentionBlocks.IsSupported(path))
            Assert.Ignore($"The {path} attention tiles do not run on this CPU ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, Vector<T> of {System.Numerics.Vector<float>.Count} floats).");
    }

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    [Test]
    public void Scores_MatchFloat64Dots([ValueSource(nameof(Paths))] KernelPath path, [Values(1, 3, 4, 5, 6, 7, 8, 11, 13, 16, 17)] int rows, [Values(1, 5, 64, 576)] int width)
    {
        Require(path);
        const float scale = 0.125f;
        const int queryStride = 600, scoreStride = 70;
        int block = AttentionBlocks.BlockPositionsOn(path);
        float[] queries = Random(rows * queryStride, rows * 100 + width), transposed = Random(width * block, width);
        float[] scores = new float[rows * scoreStride];
        fixed (float* q = queries, t = transposed, s = scores)
            AttentionBlocks.ScoresOn(path, q, rows, queryStride, t, width, scale, s, scoreStride);
        for (int r = 0; r < rows; r++)
            for (int p = 0; p < block; p++)
            {
                double dot = 0, magnitude = 0;
                for (int k = 0; k < width; k++)
                {
                    dot += (double)queries[r * queryStride + k] * transposed[k * block + p];
                    magnitude += Math.Abs((double)queries[r * queryStride + k] * transposed[k * block + p]);
                }
                Assert.That(scores[r * scoreStride + p], Is.EqualTo(dot * scale).Within(magnitude * scale * 1e-6 + 1e-12), $"row {r}, position {p}");
            }
    }

    [Test]
    public void Accumulate_AddsFloat64WeightedSums([ValueSource(nameof(Paths))] KernelPath path, [Values(1, 2, 3, 4, 7, 8, 9, 16)] int rows, [Values(1, 3, 32, 40, 72, 512)] int rank)
    {
        Require(path);
        const int weightStride = 50, latentStride = 530, contextStride = 520;
        int block = AttentionBlocks.BlockPositionsOn(path);
        float[] weights = Random(rows * weightStride, rows), latents = Random(block * latentStride, rank), contexts = Random(rows * contextStride, rank + rows);
        float[] before = (float[])contexts.Clone();
        fixed (float* w = weights, l = latents, c = contexts)
            AttentionBlocks.AccumulateOn(path, w, rows, weightStride, l, latentStride, rank, c, contextStride);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < rank; i++)
            {
                double sum = before[r * contextStride + i], magnitude = Math.Abs(sum);
                for (int p = 0; p < block; p++)
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
    public void EachRow_GetsTheSameBits_WhateverRowsShareItsTile([ValueSource(nameof(Paths))] KernelPath path)
    {
        Require(path);
        const int rows = 21, width = 97, rank = 72;
        int block = AttentionBlocks.BlockPositionsOn(path);
        float[] queries = Random(rows * width, 1), transposed = Random(width * block, 2), latents = Random(block * rank, 3), weights = Random(rows * block, 4);
        float[] scores = new float[rows * block], one = new float[block];
        float[] contexts = new float[rows * rank], alone = new float[rank];
        fixed (float* q = queries, t = transposed, s = scores, o = one, l = latents, w = weights, c = contexts, a = alone)
        {
            AttentionBlocks.ScoresOn(path, q, rows, width, t, width, 0.5f, s, block);
            AttentionBlocks.AccumulateOn(path, w, rows, block, l, rank, rank, c, rank);
            for (int r = 0; r < rows; r++)
            {
                AttentionBlocks.ScoresOn(path, q + r * width, 1, width, t, width, 0.5f, o, block);
                Assert.That(one, Is.EqualTo(scores.AsSpan(r * block, block).ToArray()), $"scores of row {r}");
                Array.Clear(alone);
                AttentionBlocks.AccumulateOn(path, w + r * block, 1, block, l, rank, rank, a, rank);
                Assert.That(alone, Is.EqualTo(contexts.AsSpan(r * rank, rank).ToArray()), $"context of row {r}");
            }
        }
    }

    // Each score sums its columns, and each context its positions, in one order on every path: the 512-bit tiles (blocks
    // of 32 positions) give the Vector<T> tiles' bits (blocks of 16), so results do not depend on the CPU's vector width.
    [Test]
    public void Avx512Tiles_GiveTheVectorTilesBits([Values(1, 8, 13)] int rows, [Values(64, 576)] int width, [Values(72, 512)] int rank)
    {
        Require(KernelPath.Avx512);
        KernelPath narrow = Paths.Skip(1).First(AttentionBlocks.IsSupported);
        int wide = AttentionBlocks.BlockPositionsOn(KernelPath.Avx512), block = AttentionBlocks.BlockPositionsOn(narrow);
        float[] queries = Random(rows * width, 5), positions = Random(wide * width, 6), weights = Random(rows * wide, 7), latents = Random(wide * rank, 8);
        float[] scoresWide = new float[rows * wide], scoresNarrow = new float[rows * wide];
        float[] contextsWide = new float[rows * rank], contextsNarrow = new float[rows * rank];
        fixed (float* q = queries, s = scoresWide, n = scoresNarrow, w = weights, l = latents, cw = contextsWide, cn = contextsNarrow)
        {
            fixed (float* t = Transposed(positions, 0, wide, width))
                AttentionBlocks.ScoresOn(KernelPath.Avx512, q, rows, width, t, width, 0.25f, s, wide);
            AttentionBlocks.AccumulateOn(KernelPath.Avx512, w, rows, wide, l, rank, rank, cw, rank);
            for (int j0 = 0; j0 < wide; j0 += block)
            {
                fixed (float* t = Transposed(positions, j0, block, width))
                    AttentionBlocks.ScoresOn(narrow, q, rows, width, t, width, 0.25f, n + j0, wide);
                AttentionBlocks.AccumulateOn(narrow, w + j0, rows, wide, l + j0 * rank, rank, rank, cn, rank);
            }
        }
        Assert.That(scoresWide, Is.EqualTo(scoresNarrow), "scores");
        Assert.That(contextsWide, Is.EqualTo(contextsNarrow), "contexts");
    }

    [Test]
    public void Dispatch_TakesTheWidestTiles()
    {
        KernelPath expected = Vector512.IsHardwareAccelerated ? KernelPath.Avx512 : System.Numerics.Vector<float>.Count >= 8 ? KernelPath.Avx2 : KernelPath.Vector128;
        Assert.That(AttentionBlocks.ActivePath, Is.EqualTo(expected));
        Assert.That(AttentionBlocks.BlockPositions, Is.EqualTo(AttentionBlocks.BlockPositionsOn(expected)));
    }

    [Test]
    public void UnsupportedPath_IsRefused()
    {
        KernelPath missing = Paths.FirstOrDefault(p => !AttentionBlocks.IsSupported(p), KernelPath.Scalar);
        float[] buffer = new float[64];
        fixed (float* b = buffer)
        {
            float* p = b;
            Assert.Throws<PlatformNotSupportedException>(() => AttentionBlocks.ScoresOn(missing, p, 1, 1, p, 1, 1f, p, 1));
            Assert.Throws<PlatformNotSupportedException>(() => AttentionBlocks.AccumulateOn(missing, p, 1, 1, p, 1, 1, p, 1));
        }
    }

    // Positions [j0, j0 + block) of row-major rows, transposed as the tiles read them (value k of position p at k · block + p).
    private static float[] Transposed(float[] rows, int j0, int block, int width)
    {
        float[] transposed = new float[block * width];
        for (int p = 0; p < block; p++)
            for (int k = 0; k < width; k++)
                transposed[k * block + p] = rows[(j0 + p) * width + k];
        return transposed;
    }
}
