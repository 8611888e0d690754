using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Ftransformers.Kernels;

/// <summary>
/// Attention over a block of cached positions for many query rows at once (heads of several tokens), as register tiles:
/// <see cref="Scores"/> takes the block transposed (position-major lanes) and broadcasts one query value per step, so
/// each loaded vector of the block serves several query rows; <see cref="Accumulate"/> broadcasts one softmax weight
/// per position and adds that position's latent, so each latent load serves several rows. The block is loaded once into
/// cache for every row of the step, where a dot product per (row, position) re-reads it per row. Every output lane sums
/// its terms in one fixed order (the columns for a score, the positions for a context) with fused multiply-adds, so a
/// row's result depends neither on how many rows share its tile nor on the path or block size. Paths: 512-bit vectors
/// with AVX-512 (blocks of 32 positions), else <see cref="Vector{T}"/> (blocks of two vectors: 16 positions with AVX2,
/// 8 with 128-bit NEON).
/// </summary>
public static class AttentionBlocks
{
    /// <summary>The path this CPU takes: Avx512, else the <see cref="Vector{T}"/> tiles (Avx2 or Vector128 by width).</summary>
    public static KernelPath ActivePath { get; } = Vector512.IsHardwareAccelerated ? KernelPath.Avx512 : VectorPath;

    // The Vector<T> tiles, named by their width.
    private static KernelPath VectorPath => Vector<float>.Count >= 8 ? KernelPath.Avx2 : KernelPath.Vector128;

    /// <summary>Whether this CPU runs <paramref name="path"/>: Avx512, or the width of <see cref="Vector{T}"/>.</summary>
    public static bool IsSupported(KernelPath path) => path == KernelPath.Avx512 ? Vector512.IsHardwareAccelerated : path == VectorPath;

    /// <summary>Positions in a block on this CPU's path: two vectors of scores per query row.</summary>
    public static int BlockPositions => BlockPositionsOn(ActivePath);

    /// <summary>Positions in a block on <paramref name="path"/>.</summary>
    public static int BlockPositionsOn(KernelPath path) => path == KernelPath.Avx512 ? 2 * Vector512<float>.Count : 2 * Vector<float>.Count;

    /// <summary>
    /// scores[r * scoreStride + p] = scale · (query row r · position p) for <paramref name="rows"/> query rows of
    /// <paramref name="width"/> values (row r at queries + r · queryStride) and the <see cref="BlockPositions"/> positions of
    /// <paramref name="transposed"/> (value k of position p at k · <see cref="BlockPositions"/> + p).
    /// </summary>
    public static unsafe void Scores(float* queries, int rows, nint queryStride, float* transposed, int width, float scale, float* scores, nint scoreStride) =>
        ScoresOn(ActivePath, queries, rows, queryStride, transposed, width, scale, scores, scoreStride);

    internal static unsafe void ScoresOn(KernelPath path, float* queries, int rows, nint queryStride, float* transposed, int width, float scale, float* scores, nint scoreStride)
    {
        CheckPath(path);
        int r = 0;
        if (path == KernelPath.Avx512)
        {
            for (; r + 8 <= rows; r += 8)
                ScoreRows512<Eight>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
            for (; r + 4 <= rows; r += 4)
                ScoreRows512<Four>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
            for (; r < rows; r++)
                ScoreRows512<One>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
            return;
        }
        for (; r + 6 <= rows; r += 6)
            ScoreRows<Six>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
        for (; r + 4 <= rows; r += 4)
            ScoreRows<Four>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
        for (; r < rows; r++)
            ScoreRows<One>(queries + r * queryStride, queryStride, transposed, width, scale, scores + r * scoreStride, scoreStride);
    }

    private static void CheckPath(KernelPath path)
    {
        if (!IsSupported(path))
            throw new PlatformNotSupportedException($"This CPU does not run the {path} attention tiles.");
    }

    // Up to six rows: twelve accumulators, two block vectors and a broadcast fill the sixteen registers AVX2 encodes,
    // and twelve independent sums keep both FMA units busy through the FMA latency.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
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

    // Up to eight rows on 512-bit vectors: sixteen accumulators, two block vectors and a broadcast of the 32 registers,
    // so each pair of block loads serves eight rows.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void ScoreRows512<TRows>(float* q, nint queryStride, float* transposed, int width, float scale, float* scores, nint scoreStride)
        where TRows : struct, IPassCount
    {
        const int n = 16, block = 2 * n;
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
        Vector512<float> e0 = default, e1 = default, f0 = default, f1 = default, g0 = default, g1 = default, h0 = default, h1 = default;
        float* q1 = q + queryStride, q2 = q1 + queryStride, q3 = q2 + queryStride, q4 = q3 + queryStride;
        float* q5 = q4 + queryStride, q6 = q5 + queryStride, q7 = q6 + queryStride;
        for (int k = 0; k < width; k++)
        {
            float* at = transposed + (nint)k * block;
            Vector512<float> low = Vector512.Load(at), high = Vector512.Load(at + n);
            var x = Vector512.Create(q[k]);
            (a0, a1) = (Vector512.FusedMultiplyAdd(x, low, a0), Vector512.FusedMultiplyAdd(x, high, a1));
            if (TRows.Value > 1)
            {
                x = Vector512.Create(q1[k]);
                (b0, b1) = (Vector512.FusedMultiplyAdd(x, low, b0), Vector512.FusedMultiplyAdd(x, high, b1));
                x = Vector512.Create(q2[k]);
                (c0, c1) = (Vector512.FusedMultiplyAdd(x, low, c0), Vector512.FusedMultiplyAdd(x, high, c1));
                x = Vector512.Create(q3[k]);
                (d0, d1) = (Vector512.FusedMultiplyAdd(x, low, d0), Vector512.FusedMultiplyAdd(x, high, d1));
            }
            if (TRows.Value > 4)
            {
                x = Vector512.Create(q4[k]);
                (e0, e1) = (Vector512.FusedMultiplyAdd(x, low, e0), Vector512.FusedMultiplyAdd(x, high, e1));
                x = Vector512.Create(q5[k]);
                (f0, f1) = (Vector512.FusedMultiplyAdd(x, low, f0), Vector512.FusedMultiplyAdd(x, high, f1));
                x = Vector512.Create(q6[k]);
                (g0, g1) = (Vector512.FusedMultiplyAdd(x, low, g0), Vector512.FusedMultiplyAdd(x, high, g1));
                x = Vector512.Create(q7[k]);
                (h0, h1) = (Vector512.FusedMultiplyAdd(x, low, h0), Vector512.FusedMultiplyAdd(x, high, h1));
            }
        }
        Store512(scores, a0, a1, scale);
        if (TRows.Value > 1)
        {
            Store512(scores + scoreStride, b0, b1, scale);
            Store512(scores + 2 * scoreStride, c0, c1, scale);
            Store512(scores + 3 * scoreStride, d0, d1, scale);
        }
        if (TRows.Value > 4)
        {
            Store512(scores + 4 * scoreStride, e0, e1, scale);
            Store512(scores + 5 * scoreStride, f0, f1, scale);
            Store512(scores + 6 * scoreStride, g0, g1, scale);
            Store512(scores + 7 * scoreStride, h0, h1, scale);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store512(float* to, Vector512<float> low, Vector512<float> high, float scale)
    {
        (low * scale).Store(to);
        (high * scale).Store(to + Vector512<float>.Count);
    }

    /// <summary>
    /// contexts[r * contextStride + c] += Σ over the block's positions p, in order, of weights[r * weightStride + p] ·
    /// latents[p * latentStride + c], for <paramref name="rows"/> rows and c below <paramref name="rank"/>.
    /// </summary>
    public static unsafe void Accumulate(float* weights, int rows, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride) =>
        AccumulateOn(ActivePath, weights, rows, weightStride, latents, latentStride, rank, contexts, contextStride);

    internal static unsafe void AccumulateOn(KernelPath path, float* weights, int rows, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride)
    {
        CheckPath(path);
        int r = 0;
        if (path == KernelPath.Avx512)
        {
            for (; r + 8 <= rows; r += 8)
                AccumulateRows512<Eight>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
            for (; r + 4 <= rows; r += 4)
                AccumulateRows512<Four>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
            for (; r < rows; r++)
                AccumulateRows512<One>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
            return;
        }
        for (; r + 3 <= rows; r += 3)
            AccumulateRows<Three>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
        for (; r < rows; r++)
            AccumulateRows<One>(weights + r * weightStride, weightStride, latents, latentStride, rank, contexts + r * contextStride, contextStride);
    }

    // Up to three rows, four vectors of context each: twelve accumulators, one latent vector at a time and three
    // broadcast weights fill the sixteen registers AVX2 encodes.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void AccumulateRows<TRows>(float* w, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride)
        where TRows : struct, IPassCount
    {
        int n = Vector<float>.Count, block = 2 * n, c = 0;
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
        AccumulateColumns(w, weightStride, TRows.Value, block, latents, latentStride, c, rank, contexts, contextStride);
    }

    // Up to eight rows on 512-bit vectors, two vectors (32 columns) of context each: sixteen accumulators, the two
    // latent vectors of a position and a broadcast weight, so each latent load serves eight rows.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void AccumulateRows512<TRows>(float* w, nint weightStride, float* latents, nint latentStride, int rank, float* contexts, nint contextStride)
        where TRows : struct, IPassCount
    {
        const int n = 16, block = 2 * n;
        int c = 0;
        for (; c + 2 * n <= rank; c += 2 * n)
        {
            float* at = contexts + c;
            Vector512<float> a0 = Vector512.Load(at), a1 = Vector512.Load(at + n);
            Vector512<float> b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
            Vector512<float> e0 = default, e1 = default, f0 = default, f1 = default, g0 = default, g1 = default, h0 = default, h1 = default;
            if (TRows.Value > 1)
            {
                (b0, b1) = (Vector512.Load(at + contextStride), Vector512.Load(at + contextStride + n));
                (c0, c1) = (Vector512.Load(at + 2 * contextStride), Vector512.Load(at + 2 * contextStride + n));
                (d0, d1) = (Vector512.Load(at + 3 * contextStride), Vector512.Load(at + 3 * contextStride + n));
            }
            if (TRows.Value > 4)
            {
                (e0, e1) = (Vector512.Load(at + 4 * contextStride), Vector512.Load(at + 4 * contextStride + n));
                (f0, f1) = (Vector512.Load(at + 5 * contextStride), Vector512.Load(at + 5 * contextStride + n));
                (g0, g1) = (Vector512.Load(at + 6 * contextStride), Vector512.Load(at + 6 * contextStride + n));
                (h0, h1) = (Vector512.Load(at + 7 * contextStride), Vector512.Load(at + 7 * contextStride + n));
            }
            for (int p = 0; p < block; p++)
            {
                float* latent = latents + p * latentStride + c;
                Vector512<float> low = Vector512.Load(latent), high = Vector512.Load(latent + n);
                var x = Vector512.Create(w[p]);
                (a0, a1) = (Vector512.FusedMultiplyAdd(x, low, a0), Vector512.FusedMultiplyAdd(x, high, a1));
                if (TRows.Value > 1)
                {
                    x = Vector512.Create(w[weightStride + p]);
                    (b0, b1) = (Vector512.FusedMultiplyAdd(x, low, b0), Vector512.FusedMultiplyAdd(x, high, b1));
                    x = Vector512.Create(w[2 * weightStride + p]);
                    (c0, c1) = (Vector512.FusedMultiplyAdd(x, low, c0), Vector512.FusedMultiplyAdd(x, high, c1));
                    x = Vector512.Create(w[3 * weightStride + p]);
                    (d0, d1) = (Vector512.FusedMultiplyAdd(x, low, d0), Vector512.FusedMultiplyAdd(x, high, d1));
                }
                if (TRows.Value > 4)
                {
                    x = Vector512.Create(w[4 * weightStride + p]);
                    (e0, e1) = (Vector512.FusedMultiplyAdd(x, low, e0), Vector512.FusedMultiplyAdd(x, high, e1));
                    x = Vector512.Create(w[5 * weightStride + p]);
                    (f0, f1) = (Vector512.FusedMultiplyAdd(x, low, f0), Vector512.FusedMultiplyAdd(x, high, f1));
                    x = Vector512.Create(w[6 * weightStride + p]);
                    (g0, g1) = (Vector512.FusedMultiplyAdd(x, low, g0), Vector512.FusedMultiplyAdd(x, high, g1));
                    x = Vector512.Create(w[7 * weightStride + p]);
                    (h0, h1) = (Vector512.FusedMultiplyAdd(x, low, h0), Vector512.FusedMultiplyAdd(x, high, h1));
                }
            }
            a0.Store(at);
            a1.Store(at + n);
            if (TRows.Value > 1)
            {
                b0.Store(at + contextStride);
                b1.Store(at + contextStride + n);
                c0.Store(at + 2 * contextStride);
                c1.Store(at + 2 * contextStride + n);
                d0.Store(at + 3 * contextStride);
                d1.Store(at + 3 * contextStride + n);
            }
            if (TRows.Value > 4)
            {
                e0.Store(at + 4 * contextStride);
                e1.Store(at + 4 * contextStride + n);
                f0.Store(at + 5 * contextStride);
                f1.Store(at + 5 * contextStride + n);
                g0.Store(at + 6 * contextStride);
                g1.Store(at + 6 * contextStride + n);
                h0.Store(at + 7 * contextStride);
                h1.Store(at + 7 * contextStride + n);
            }
        }
        AccumulateColumns(w, weightStride, TRows.Value, block, latents, latentStride, c, rank, contexts, contextStride);
    }

    // Columns [from, rank) of the rows (ranks not a multiple of a tile's columns): the same sums, one value at a time.
    private static unsafe void AccumulateColumns(float* w, nint weightStride, int rows, int block, float* latents, nint latentStride, int from, int rank, float* contexts, nint contextStride)
    {
        for (int c = from; c < rank; c++)
            for (int r = 0; r < rows; r++)
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
