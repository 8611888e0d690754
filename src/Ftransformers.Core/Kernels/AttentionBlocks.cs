using System.Numerics;
using System.Runtime.CompilerServices;

namespace Ftransformers.Kernels;

/// <summary>
/// Attention over a block of cached positions for many query rows at once (heads of several tokens), as register tiles:
/// <see cref="Scores"/> takes the block transposed (position-major lanes) and broadcasts one query value per step, so
/// each loaded vector of the block serves four query rows; <see cref="Accumulate"/> broadcasts one softmax weight per
/// position and adds that position's latent, so each latent load serves two rows. The block is loaded once into cache
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
        for (; r + 4 <= rows; r += 4)
            ScoreRows<Four>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
        for (; r < rows; r++)
            ScoreRows<One>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
    }

    private static unsafe void ScoreRows<TRows>(float* q, nint queryStride, float* transposed, int width, float scale, float* scores, nint scoreStride)
        where TRows : struct, IPassCount
    {
        int n = Vector<float>.Count, block = 2 * n;
        Vector<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
        float* q1 = q + queryStride, q2 = q1 + queryStride, q3 = q2 + queryStride;
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
        }
        Store(scores, n, a0, a1, scale);
        if (TRows.Value > 1)
        {
            Store(scores + scoreStride, n, b0, b1, scale);
            Store(scores + 2 * scoreStride, n, c0, c1, scale);
            Store(scores + 3 * scoreStride, n, d0, d1, scale);
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
        for (; r + 2 <= rows; r += 2)
            AccumulateRows<Two>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
        for (; r < rows; r++)
            AccumulateRows<One>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
    }

    private static unsafe void AccumulateRows<TRows>(float* w, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride)
        where TRows : struct, IPassCount
    {
        int n = Vector<float>.Count, block = BlockPositions, c = 0;
        float* w1 = w + weightStride, context1 = contexts + contextStride;
        // Four vectors of each row's context at a time, through every position of the block.
        for (; c + 4 * n <= rank; c += 4 * n)
        {
            Vector<float> a0 = Load(contexts + c, 0, n), a1 = Load(contexts + c, 1, n), a2 = Load(contexts + c, 2, n), a3 = Load(contexts + c, 3, n);
            Vector<float> b0 = default, b1 = default, b2 = default, b3 = default;
            if (TRows.Value > 1)
                (b0, b1, b2, b3) = (Load(context1 + c, 0, n), Load(context1 + c, 1, n), Load(context1 + c, 2, n), Load(context1 + c, 3, n));
            for (int p = 0; p < block; p++)
            {
                float* latent = latents + p * latentStride + c;
                Vector<float> l0 = Load(latent, 0, n), l1 = Load(latent, 1, n), l2 = Load(latent, 2, n), l3 = Load(latent, 3, n);
                var x = new Vector<float>(w[p]);
                (a0, a1, a2, a3) = (Vector.FusedMultiplyAdd(x, l0, a0), Vector.FusedMultiplyAdd(x, l1, a1), Vector.FusedMultiplyAdd(x, l2, a2), Vector.FusedMultiplyAdd(x, l3, a3));
                if (TRows.Value > 1)
                {
                    x = new Vector<float>(w1[p]);
                    (b0, b1, b2, b3) = (Vector.FusedMultiplyAdd(x, l0, b0), Vector.FusedMultiplyAdd(x, l1, b1), Vector.FusedMultiplyAdd(x, l2, b2), Vector.FusedMultiplyAdd(x, l3, b3));
                }
            }
            Unsafe.WriteUnaligned(contexts + c, a0);
            Unsafe.WriteUnaligned(contexts + c + n, a1);
            Unsafe.WriteUnaligned(contexts + c + 2 * n, a2);
            Unsafe.WriteUnaligned(contexts + c + 3 * n, a3);
            if (TRows.Value > 1)
            {
                Unsafe.WriteUnaligned(context1 + c, b0);
                Unsafe.WriteUnaligned(context1 + c + n, b1);
                Unsafe.WriteUnaligned(context1 + c + 2 * n, b2);
                Unsafe.WriteUnaligned(context1 + c + 3 * n, b3);
            }
        }
        // The columns left (ranks not a multiple of four vectors): the same sums, one value at a time.
        for (; c < rank; c++)
        {
            float a = contexts[c], b = TRows.Value > 1 ? context1[c] : 0;
            for (int p = 0; p < block; p++)
            {
                float latent = latents[p * latentStride + c];
                a = MathF.FusedMultiplyAdd(w[p], latent, a);
                if (TRows.Value > 1)
                    b = MathF.FusedMultiplyAdd(w1[p], latent, b);
            }
            contexts[c] = a;
            if (TRows.Value > 1)
                context1[c] = b;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector<float> Load(float* at, int vector, int n) => Unsafe.ReadUnaligned<Vector<float>>(at + vector * n);
}
