using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Threading;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// Multi-head latent attention in its absorbed form: the cache holds one normalized latent and one roped key per
/// token; each head's query is projected into latent space through kv_b's key rows, and its output is read out
/// of the attended latent through kv_b's value rows, so keys and values are never materialized per head.
/// </summary>
internal sealed class MlaAttention
{
    private readonly DeepSeekV3Config _config;
    private readonly RotaryEmbedding _rope;
    private readonly WeightMatrix? _qA, _q;
    private readonly float[]? _qANorm;
    private readonly WeightMatrix _kvA, _kvB, _o;
    private readonly float[] _kvANorm;
    private readonly float _softmaxScale;
    private readonly Int8Absorption? _int8Absorption;

    public MlaAttention(WeightLoader weights, DeepSeekV3Config config, RotaryEmbedding rope, int layer)
    {
        _config = config;
        _rope = rope;
        string p = $"model.layers.{layer}.self_attn";
        int hidden = config.HiddenSize, heads = config.NumAttentionHeads;
        WeightFormat format = weights.Precision.Attention;
        if (config.QLoraRank is int qRank)
        {
            _qA = weights.Matrix(p + ".q_a_proj.weight", qRank, hidden, format);
            _qANorm = weights.Vector(p + ".q_a_layernorm.weight", qRank);
            _q = weights.Matrix(p + ".q_b_proj.weight", heads * config.QkHeadDim, qRank, format);
        }
        else
        {
            _q = weights.Matrix(p + ".q_proj.weight", heads * config.QkHeadDim, hidden, format);
        }
        _kvA = weights.Matrix(p + ".kv_a_proj_with_mqa.weight", config.KvLoraRank + config.QkRopeHeadDim, hidden, format);
        _kvANorm = weights.Vector(p + ".kv_a_layernorm.weight", config.KvLoraRank);
        _kvB = weights.Matrix(p + ".kv_b_proj.weight", heads * (config.QkNopeHeadDim + config.VHeadDim), config.KvLoraRank, format);
        _o = weights.Matrix(p + ".o_proj.weight", hidden, heads * config.VHeadDim, format);
        _softmaxScale = (float)config.SoftmaxScale;
        if (_kvB is Int8WeightMatrix { Weights.BlockSize: var block } int8 && block == int8.Cols) // per-row scales (not Q8_0 blocks)
            _int8Absorption = new Int8Absorption(int8.Weights, heads, config.QkNopeHeadDim, config.VHeadDim);
    }

    /// <summary>The projections and norms a step reads (an INT8 kv_b's absorbed copy holds the same codes and scales).</summary>
    public PartWeights Footprint =>
        (_qA?.Footprint ?? default) + (_qANorm is { } qNorm ? WeightMatrix.VectorWeights(qNorm) : default) + _q!.Footprint
        + _kvA.Footprint + WeightMatrix.VectorWeights(_kvANorm) + _kvB.Footprint + _o.Footprint;

    /// <summary>
    /// Attends the tokens of <paramref name="batch"/> (rows of <paramref name="x"/>): writes each token's latent to
    /// its KV slot for <paramref name="layer"/>, then lets it attend causally to positions 0..p of its own sequence.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, ForwardBatch batch, ILatentStore kv, int layer)
    {
        DeepSeekV3Config c = _config;
        int tokens = batch.TokenCount, heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, rank = c.KvLoraRank;
        int qkHead = c.QkHeadDim, vHead = c.VHeadDim, kvbHead = nope + vHead, width = rank + rope;
        float eps = (float)c.RmsNormEps;
        ReadOnlySpan<int> positions = batch.Positions, sequences = batch.Sequences;

        int maxVisible = 0;
        foreach (int p in positions)
            maxVisible = Math.Max(maxVisible, p + 1);
        int group = Math.Min(tokens, TokensPerGroup);
        // Each (token, head) row of scores spans whole blocks of positions; a run of tokens attending together holds its
        // scores at once, as many tokens as fit the budget (one at least, as a single token always did).
        int stride = (maxVisible + AttentionBlocks.BlockPositions - 1) / AttentionBlocks.BlockPositions * AttentionBlocks.BlockPositions;
        int runTokens = (int)Math.Clamp(ScoreBudgetBytes / ((long)heads * stride * sizeof(float)), 1, group);
        using var q = new PooledBuffer<float>(tokens * heads * qkHead);
        using var kvA = new PooledBuffer<float>(tokens * width);
        using var queries = new PooledBuffer<float>(group * heads * width);
        using var contexts = new PooledBuffer<float>(group * heads * rank);
        using var scores = new PooledBuffer<float>(runTokens * heads * stride);
        using var angles = new PooledBuffer<float>(group * rope);
        using var attended = new PooledBuffer<float>(tokens * heads * vHead);

        if (_qA != null)
        {
            using var qa = new PooledBuffer<float>(tokens * _qA.Rows);
            _qA.Multiply(x, qa.Span, tokens);
            RmsNorm.ApplyRows(qa.Span, _qA.Rows, _qANorm, eps);
            _q!.Multiply(qa.Span, q.Span, tokens);
        }
        else
        {
            _q!.Multiply(x, q.Span, tokens);
        }

        // Every token's latent goes to the cache first: later tokens of the same sequence attend to earlier ones.
        _kvA.Multiply(x, kvA.Span, tokens);
        Span<float> cos = stackalloc float[rope / 2], sin = stackalloc float[rope / 2];
        for (int t = 0; t < tokens; t++)
        {
            Span<float> row = kvA.Span.Slice(t * width, width);
            RmsNorm.Apply(row[..rank], _kvANorm, eps, row[..rank]);
            _rope.Angles(positions[t], cos, sin);
            Rope.ApplyInterleaved(row[rank..], cos, sin);
            kv.Write(layer, batch.Slot(sequences[t], positions[t]), row);
        }

        // Per group of tokens, heads split across the compute pool: each head's query in latent space
        // [q_nope W_uk | q_pe], scores over each token's visible positions, softmax, latent context, and the head's
        // output through W_uv. A group shares each widened row of kv_b, which decode batches of several sequences need.
        HeadWork work = HeadWork.ForThisThread();
        unsafe
        {
            // Pinned for the workers, which read and write these buffers through pointers.
            fixed (float* pq = q.Span, pQueries = queries.Span, pScores = scores.Span, pContexts = contexts.Span, pAttended = attended.Span, pAngles = angles.Span)
            {
                for (int t0 = 0; t0 < tokens; t0 += group)
                {
                    int n = Math.Min(group, tokens - t0);
                    long work1 = 0;
                    for (int t = t0; t < t0 + n; t++)
                    {
                        _rope.Angles(positions[t], angles.Span.Slice((t - t0) * rope, rope / 2), angles.Span.Slice((t - t0) * rope + rope / 2, rope / 2));
                        work1 += (long)(positions[t] + 1) * width;
                    }
                    work.Start(this, kv, layer, batch, t0, n, stride, runTokens, pq, pAngles, pQueries, pScores, pContexts, pAttended);
                    if (_o.Pool is { } pool)
                        pool.For(heads, work, minChunk: (int)Math.Max(1, (1 << 15) / Math.Max(1, work1 + nope * rank * 2)));
                    else
                        work.Run(0, heads);
                    work.Finish();
                }
            }
        }
        _o.Multiply(attended.Span, y, tokens);
    }

    // Tokens whose absorbed projections share one widening of each kv_b row, and whose attention shares each block of
    // cached positions.
    private const int TokensPerGroup = 64;

    // Scores held at once by a run of tokens (at 2K positions, 32 tokens of 128 heads; at 40K, one token).
    private const long ScoreBudgetBytes = 32L << 20;

    // Scratch of a worker thread for one block of positions in F32: rows (position after position, zero past the
    // visible ones) and the block transposed (value after value, for the scores).
    [ThreadStatic]
    private static float[]? t_block;

    // Row j of the sequence's cache in F32: the cache's own row, or one widened from BF16 into rowScratch.
    private static ReadOnlySpan<float> Latent(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int j, Span<float> rowScratch)
    {
        long slot = (long)pageTable[j / pageSize] * pageSize + j % pageSize;
        if (kv.DType == KvCacheDType.F32)
            return kv.RowF32(layer, slot);
        BFloat16.ToSingle(kv.RowBf16(layer, slot), rowScratch);
        return rowScratch;
    }

    // Positions [j0, j0 + BlockPositions) transposed into the block; positions from visible on are zero.
    private static unsafe void LoadTransposed(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int j0, int visible, float* rows, float* transposed)
    {
        int width = kv.RowWidth, block = AttentionBlocks.BlockPositions;
        for (int p = 0; p < block; p++)
        {
            if (j0 + p >= visible)
            {
                for (int k = 0; k < width; k++)
                    transposed[(long)k * block + p] = 0;
                continue;
            }
            ReadOnlySpan<float> row = Latent(kv, layer, pageTable, pageSize, j0 + p, new Span<float>(rows, width));
            for (int k = 0; k < width; k++)
                transposed[(long)k * block + p] = row[k];
        }
    }

    // Positions [j0, j0 + BlockPositions) as rows: straight from an F32 cache when the block fills part of one page,
    // else copied (widened, zero past the visible positions) into rows.
    private static unsafe float* LatentRows(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int j0, int visible, float* rows)
    {
        int width = kv.RowWidth, block = AttentionBlocks.BlockPositions;
        if (kv.DType == KvCacheDType.F32 && pageSize % block == 0 && j0 + block <= visible)
            return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(Latent(kv, layer, pageTable, pageSize, j0, default)));
        for (int p = 0; p < block; p++)
        {
            var row = new Span<float>(rows + (long)p * width, width);
            if (j0 + p >= visible)
                row.Clear();
            else
                Latent(kv, layer, pageTable, pageSize, j0 + p, row).CopyTo(row);
        }
        return rows;
    }

    // A group of tokens' attention over a range of heads, handed to the compute pool; one per calling thread.
    private sealed unsafe class HeadWork : IRangeWork
    {
        [ThreadStatic]
        private static HeadWork? t_current;

        private MlaAttention _attention = null!;
        private ILatentStore _kv = null!;
        private ForwardBatch _batch = null!;
        private int _layer, _first, _count, _stride, _runTokens;
        private float* _q, _angles, _queries, _scores, _contexts, _attended;

        public static HeadWork ForThisThread() => t_current ??= new HeadWork();

        // Tokens [first, first + count) of the batch; the pointers are pinned by the caller until Finish. Per token of
        // the group: angles holds cos then sin; queries and contexts hold all heads. q and attended cover the batch.
        // scores holds runTokens tokens' rows of stride values per head.
        public void Start(MlaAttention attention, ILatentStore kv, int layer, ForwardBatch batch, int first, int count, int stride, int runTokens,
            float* q, float* angles, float* queries, float* scores, float* contexts, float* attended)
        {
            (_attention, _kv, _layer, _batch, _first, _count, _stride, _runTokens) = (attention, kv, layer, batch, first, count, stride, runTokens);
            _q = q;
            _angles = angles;
            _queries = queries;
            _scores = scores;
            _contexts = contexts;
            _attended = attended;
        }

        public void Finish()
        {
            _attention = null!;
            _kv = null!;
            _batch = null!;
        }

        public void Run(int h0, int h1)
        {
            MlaAttention a = _attention;
            DeepSeekV3Config c = a._config;
            int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, rank = c.KvLoraRank;
            int qkHead = c.QkHeadDim, vHead = c.VHeadDim, kvbHead = nope + vHead, width = rank + rope, n = _count;
            Span<float> row = rank <= 2048 ? stackalloc float[rank] : new float[rank];

            // Queries: q_nope W_uk (in INT8, or row by row of kv_b, each row widened once for the group), then the roped q_pe.
            long qStride = (long)heads * qkHead;
            for (int h = h0; h < h1; h++)
            {
                for (int t = 0; t < n; t++)
                {
                    Span<float> query = Query(t, h, heads, width);
                    new Span<float>(_q + (_first + t) * qStride + h * qkHead + nope, rope).CopyTo(query[rank..]);
                    Rope.ApplyInterleaved(query[rank..], new ReadOnlySpan<float>(_angles + t * rope, rope / 2), new ReadOnlySpan<float>(_angles + t * rope + rope / 2, rope / 2));
                }
                if (a._int8Absorption is { } int8)
                {
                    int8.Queries(h, new ReadOnlySpan<float>(_q + _first * qStride + h * qkHead, (int)((n - 1) * qStride) + nope), (int)qStride, n,
                        new Span<float>(_queries + h * width, (n - 1) * heads * width + rank), heads * width);
                    continue;
                }
                for (int t = 0; t < n; t++)
                    Query(t, h, heads, width)[..rank].Clear();
                for (int r = 0; r < nope; r++)
                {
                    a._kvB.CopyRow(h * kvbHead + r, row);
                    for (int t = 0; t < n; t++)
                    {
                        Span<float> latent = Query(t, h, heads, width)[..rank];
                        TensorPrimitives.MultiplyAdd(row, _q[(_first + t) * qStride + h * qkHead + r], latent, latent);
                    }
                }
            }

            // Scores, softmax and latent contexts, for each run of the group's tokens that share a sequence (a prefill
            // chunk is one run, up to the score buffer's tokens): block by block of that sequence's positions, for all the
            // run's tokens and heads at once.
            for (int t = 0; t < n;)
            {
                int sequence = _batch.Sequences[_first + t], end = t + 1;
                while (end < n && end - t < _runTokens && _batch.Sequences[_first + end] == sequence)
                    end++;
                AttendRun(t, end, h0, h1);
                t = end;
            }

            // Outputs: each head's W_uv (in INT8, or row by row, each row widened once for the group) against its latent contexts.
            for (int h = h0; h < h1; h++)
            {
                if (a._int8Absorption is { } int8)
                {
                    int8.Outputs(h, new ReadOnlySpan<float>(_contexts + h * rank, (n - 1) * heads * rank + rank), heads * rank, n,
                        new Span<float>(_attended + ((long)_first * heads + h) * vHead, (n - 1) * heads * vHead + vHead), heads * vHead);
                    continue;
                }
                for (int r = 0; r < vHead; r++)
                {
                    a._kvB.CopyRow(h * kvbHead + nope + r, row);
                    for (int t = 0; t < n; t++)
                        _attended[((long)(_first + t) * heads + h) * vHead + r] = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(_contexts + ((long)t * heads + h) * rank, rank));
                }
            }
        }

        // Tokens [t0, t1) of the group, one sequence's, over heads [h0, h1): scores block by block, each token's softmax
        // over its own visible positions (weights past them zero), then the latent contexts block by block.
        private void AttendRun(int t0, int t1, int h0, int h1)
        {
            MlaAttention a = _attention;
            DeepSeekV3Config c = a._config;
            int heads = c.NumAttentionHeads, rank = c.KvLoraRank, width = rank + c.QkRopeHeadDim, block = AttentionBlocks.BlockPositions;
            IReadOnlyList<int> pageTable = _batch.PageTable(_batch.Sequences[_first + t0]);
            int pageSize = _batch.PageSize, visible = 0;
            for (int t = t0; t < t1; t++)
                visible = Math.Max(visible, Visible(t));
            float[] scratch = t_block is { } b && b.Length >= 2 * block * width ? b : t_block = new float[2 * block * width];
            fixed (float* rows = scratch)
            {
                float* transposed = rows + block * width;
                for (int j0 = 0; j0 < visible; j0 += block)
                {
                    LoadTransposed(_kv, _layer, pageTable, pageSize, j0, visible, rows, transposed);
                    for (int t = t0; t < t1; t++)
                        if (Visible(t) > j0)
                            AttentionBlocks.Scores(_queries + ((long)t * heads + h0) * width, h1 - h0, width, transposed, width, a._softmaxScale,
                                Scores(t - t0, h0, heads) + j0, _stride);
                }
                for (int t = t0; t < t1; t++)
                    for (int h = h0; h < h1; h++)
                    {
                        var row = new Span<float>(Scores(t - t0, h, heads), _stride);
                        TensorPrimitives.SoftMax(row[..Visible(t)], row[..Visible(t)]);
                        row[Visible(t)..].Clear();
                    }
                for (int t = t0; t < t1; t++)
                    new Span<float>(_contexts + ((long)t * heads + h0) * rank, (h1 - h0) * rank).Clear();
                for (int j0 = 0; j0 < visible; j0 += block)
                {
                    float* latents = LatentRows(_kv, _layer, pageTable, pageSize, j0, visible, rows);
                    for (int t = t0; t < t1; t++)
                        if (Visible(t) > j0)
                            AttentionBlocks.Accumulate(Scores(t - t0, h0, heads) + j0, h1 - h0, _stride, latents, width, rank,
                                _contexts + ((long)t * heads + h0) * rank, rank);
                }
            }
        }

        private int Visible(int t) => _batch.Positions[_first + t] + 1;

        // Scores of the run's token i (from the run's first) and head h.
        private float* Scores(int i, int h, int heads) => _scores + ((long)i * heads + h) * _stride;

        private Span<float> Query(int t, int h, int heads, int width) => new(_queries + ((long)t * heads + h) * width, width);
    }
}
