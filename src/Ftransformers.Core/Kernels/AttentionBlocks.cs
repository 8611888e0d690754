using System.Numerics;
using System.Runtime.CompilerServices;

namespace Ftransformers.Kernels;

/// <summary>
/// Attention over a block of cached positions for many query rows at once (heads of several tokens), as register tiles:
/// <see cref="Scores"/> takes the block transposed (position-major lanes) and broadcasts one query value per step, so
/// each loaded vector of the block serves six query rows; <see cref="Accumulate"/> broadcasts one softmax weight per
/// position and adds that position's latent, so each latent load serves three rows. The block is loaded once into cache
/// for every row of the step, where a dot product per (row, position) re-reads it per row. Every output lane sums its
/// terms in one fixed order (the columns for a score, the positions for a context) with fused multiply-adds, so a row's
/// result does not depend on how many rows share its tile. Vectors are <see cref="Vector{T}"/>: 256-bit on x86 with
/// AVX2, 128-bit NEON on ARM64.
/// </summary>
public static class AttentionBlocks
{
    /// <summary>Positions in a block: two vectors of scores per query row.</summary>
    public static int BlockPositions => 2 * Vector<float>.Count;

    /// <summary>
    /// scores[r * scoreStride + p] = scale · (query row r · position p) for <paramref name="rows"/> query rows of
    /// <paramref name="width"/> values (row r at queries + r · queryStride) and the <see cref="BlockPositions"/> positions of
    /// <paramref name="transposed"/> (value k of position p at k · <see cref="BlockPositions"/> + p).
    /// </summary>
    public static unsafe void Scores(float* queries, int rows, nint queryStride, float* transposed, int width, float scale, float* scores, nint scoreStride)
    {
        int r = 0;
        for (; r + 6 <= rows; r += 6)
            ScoreRows<Six>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
        for (; r + 4 <= rows; r += 4)
            ScoreRows<Four>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
        for (; r < rows; r++)
            ScoreRows<One>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
    }

    // Up to six rows: twelve accumulators, two block vectors and a broadcast fill the sixteen registers AVX2 encodes,
    // and twelve independent sums keep both FMA units busy through the FMA latency.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void ScoreRows<TRows>(float* q, nint queryStride, float* transposed, int width, float scale, float* scores, nint scoreStride)
        where TRows : struct, IPassCount
    {
        int n = Vector<float>.Count, block = 2 * n;
        Vector<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
        Vector<float> e0 = default, e1 = default, f0 = default, f1 = default;
        float* q1 = q + queryStride, q2 = q1 + queryStride, q3 = q2 + queryStride, q4 = q3 + queryStride, q5 = q4 + queryStride;
        for (int k = 0; k < width; k++)
        {
            float* at = transposed + (nint)k * block;
            Vector<float> low = Unsafe.ReadUnaligned<Vector<float>>(at), high = Unsafe.ReadUnaligned<Vector<float>>(at + n);
            var x = new Vector<float>(q[k]);
            (a0, a1) = (Vector.FusedMultiplyAdd(x, low, a0), Vector.FusedMultiplyAdd(x, high, a1));
            if (TRows.Value > 1)
            {
                x = new Vector<float>(q1[k]);
                (b0, b1) = (Vector.FusedMultiplyAdd(x, low, b0), Vector.FusedMultiplyAdd(x, high, b1));
                x = new Vector<float>(q2[k]);
                (c0, c1) = (Vector.FusedMultiplyAdd(x, low, c0), Vector.FusedMultiplyAdd(x, high, c1));
                x = new Vector<float>(q3[k]);
                (d0, d1) = (Vector.FusedMultiplyAdd(x, low, d0), Vector.FusedMultiplyAdd(x, high, d1));
            }
            if (TRows.Value > 4)
            {
                x = new Vector<float>(q4[k]);
                (e0, e1) = (Vector.FusedMultiplyAdd(x, low, e0), Vector.FusedMultiplyAdd(x, high, e1));
                x = new Vector<float>(q5[k]);
                (f0, f1) = (Vector.FusedMultiplyAdd(x, low, f0), Vector.FusedMultiplyAdd(x, high, f1));
            }
        }
        Store(scores, n, a0, a1, scale);
        if (TRows.Value > 1)
        {
            Store(scores + scoreStride, n, b0, b1, scale);
            Store(scores + 2 * scoreStride, n, c0, c1, scale);
            Store(scores + 3 * scoreStride, n, d0, d1, scale);
        }
        if (TRows.Value > 4)
        {
            Store(scores + 4 * scoreStride, n, e0, e1, scale);
            Store(scores + 5 * scoreStride, n, f0, f1, scale);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(float* to, int n, Vector<float> low, Vector<float> high, float scale)
    {
        Unsafe.WriteUnaligned(to, low * scale);
        Unsafe.WriteUnaligned(to + n, high * scale);
    }

    /// <summary>
    /// contexts[r * contextStride + c] += Σ over the block's positions p, in order, of weights[r * weightStride + p] ·
    /// latents[p * latentStride + c], for <paramref name="rows"/> rows and c below <paramref name="rank"/>.
    /// </summary>
    public static unsafe void Accumulate(float* weights, int rows, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride)
    {
        int r = 0;
        for (; r + 3 <= rows; r += 3)
            AccumulateRows<Three>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
        for (; r < rows; r++)
            AccumulateRows<One>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
    }

    // Up to three rows, four vectors of context each: twelve accumulators, one latent vector at a time and three
    // broadcast weights fill the sixteen registers AVX2 encodes.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void AccumulateRows<TRows>(float* w, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride)
        where TRows : struct, IPassCount
    {
        int n = Vector<float>.Count, block = BlockPositions, c = 0;
        float* w1 = w + weightStride, w2 = w1 + weightStride, context1 = contexts + contextStride, context2 = context1 + contextStride;
        for (; c + 4 * n <= rank; c += 4 * n)
        {
            Vector<float> a0 = Load(contexts + c, 0, n), a1 = Load(contexts + c, 1, n), a2 = Load(contexts + c, 2, n), a3 = Load(contexts + c, 3, n);
            Vector<float> b0 = default, b1 = default, b2 = default, b3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
            if (TRows.Value > 1)
            {
                (b0, b1, b2, b3) = (Load(context1 + c, 0, n), Load(context1 + c, 1, n), Load(context1 + c, 2, n), Load(context1 + c, 3, n));
                (c0, c1, c2, c3) = (Load(context2 + c, 0, n), Load(context2 + c, 1, n), Load(context2 + c, 2, n), Load(context2 + c, 3, n));
            }
            for (int p = 0; p < block; p++)
            {
                float* latent = latents + p * latentStride + c;
                var x = new Vector<float>(w[p]);
                Vector<float> y = TRows.Value > 1 ? new Vector<float>(w1[p]) : default, z = TRows.Value > 1 ? new Vector<float>(w2[p]) : default;
                Vector<float> l = Load(latent, 0, n);
                a0 = Vector.FusedMultiplyAdd(x, l, a0);
                if (TRows.Value > 1)
                    (b0, c0) = (Vector.FusedMultiplyAdd(y, l, b0), Vector.FusedMultiplyAdd(z, l, c0));
                l = Load(latent, 1, n);
                a1 = Vector.FusedMultiplyAdd(x, l, a1);
                if (TRows.Value > 1)
                    (b1, c1) = (Vector.FusedMultiplyAdd(y, l, b1), Vector.FusedMultiplyAdd(z, l, c1));
                l = Load(latent, 2, n);
                a2 = Vector.FusedMultiplyAdd(x, l, a2);
                if (TRows.Value > 1)
                    (b2, c2) = (Vector.FusedMultiplyAdd(y, l, b2), Vector.FusedMultiplyAdd(z, l, c2));
                l = Load(latent, 3, n);
                a3 = Vector.FusedMultiplyAdd(x, l, a3);
                if (TRows.Value > 1)
                    (b3, c3) = (Vector.FusedMultiplyAdd(y, l, b3), Vector.FusedMultiplyAdd(z, l, c3));
            }
            StoreFour(contexts + c, n, a0, a1, a2, a3);
            if (TRows.Value > 1)
            {
                StoreFour(context1 + c, n, b0, b1, b2, b3);
                StoreFour(context2 + c, n, c0, c1, c2, c3);
            }
        }
        // The columns left (ranks not a multiple of four vectors): the same sums, one value at a time.
        for (; c < rank; c++)
            for (int r = 0; r < TRows.Value; r++)
            {
                float* weights = w + r * weightStride;
                float sum = contexts[r * contextStride + c];
                for (int p = 0; p < block; p++)
                    sum = MathF.FusedMultiplyAdd(weights[p], latents[p * latentStride + c], sum);
                contexts[r * contextStride + c] = sum;
            }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreFour(float* to, int n, Vector<float> v0, Vector<float> v1, Vector<float> v2, Vector<float> v3)
    {
        Unsafe.WriteUnaligned(to, v0);
        Unsafe.WriteUnaligned(to + n, v1);
        Unsafe.WriteUnaligned(to + 2 * n, v2);
        Unsafe.WriteUnaligned(to + 3 * n, v3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector<float> Load(float* at, int vector, int n) => Unsafe.ReadUnaligned<Vector<float>>(at + vector * n);
}
