using System.Numerics.Tensors;
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
        if (_kvB is Int8WeightMatrix int8)
            _int8Absorption = new Int8Absorption(int8.Weights, heads, config.QkNopeHeadDim, config.VHeadDim);
    }

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
        using var q = new PooledBuffer<float>(tokens * heads * qkHead);
        using var kvA = new PooledBuffer<float>(tokens * width);
        using var queries = new PooledBuffer<float>(group * heads * width);
        using var contexts = new PooledBuffer<float>(group * heads * rank);
        using var scores = new PooledBuffer<float>(heads * maxVisible);
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
                    work.Start(this, kv, layer, batch, t0, n, maxVisible, pq, pAngles, pQueries, pScores, pContexts, pAttended);
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

    // Tokens whose absorbed projections share one widening of each kv_b row.
    private const int TokensPerGroup = 16;

    // scores[h * stride + j] = scale * (query_h . row_j) for heads [h0, h1) and the visible positions j, page by page.
    private void Score(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible, ReadOnlySpan<float> queries, int h0, int h1, Span<float> scores, int stride)
    {
        int width = kv.RowWidth;
        bool f32 = kv.DType == KvCacheDType.F32;
        for (int page = 0, j = 0; j < visible; page++)
        {
            long slot = (long)pageTable[page] * pageSize;
            for (int end = Math.Min(visible, j + pageSize); j < end; j++, slot++)
            {
                if (f32)
                {
                    ReadOnlySpan<float> row = kv.RowF32(layer, slot);
                    for (int h = h0; h < h1; h++)
                        scores[h * stride + j] = TensorPrimitives.Dot(queries.Slice(h * width, width), row) * _softmaxScale;
                }
                else
                {
                    ReadOnlySpan<ushort> row = kv.RowBf16(layer, slot);
                    for (int h = h0; h < h1; h++)
                        scores[h * stride + j] = BFloat16.Dot(row, queries.Slice(h * width, width)) * _softmaxScale;
                }
            }
        }
    }

    // contexts[h] = sum over visible positions j of weights[h * stride + j] * latent_j, in position order, for heads [h0, h1).
    private static void Attend(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible, ReadOnlySpan<float> weights, int stride, int h0, int h1, int rank, Span<float> contexts)
    {
        contexts[(h0 * rank)..(h1 * rank)].Clear();
        bool f32 = kv.DType == KvCacheDType.F32;
        for (int page = 0, j = 0; j < visible; page++)
        {
            long slot = (long)pageTable[page] * pageSize;
            for (int end = Math.Min(visible, j + pageSize); j < end; j++, slot++)
            {
                if (f32)
                {
                    ReadOnlySpan<float> latent = kv.RowF32(layer, slot)[..rank];
                    for (int h = h0; h < h1; h++)
                    {
                        Span<float> context = contexts.Slice(h * rank, rank);
                        TensorPrimitives.MultiplyAdd(latent, weights[h * stride + j], context, context);
                    }
                }
                else
                {
                    ReadOnlySpan<ushort> latent = kv.RowBf16(layer, slot)[..rank];
                    for (int h = h0; h < h1; h++)
                        BFloat16.MultiplyAdd(latent, weights[h * stride + j], contexts.Slice(h * rank, rank));
                }
            }
        }
    }

    // A group of tokens' attention over a range of heads, handed to the compute pool; one per calling thread.
    private sealed unsafe class HeadWork : IRangeWork
    {
        [ThreadStatic]
        private static HeadWork? t_current;

        private MlaAttention _attention = null!;
        private ILatentStore _kv = null!;
        private ForwardBatch _batch = null!;
        private int _layer, _first, _count, _stride;
        private float* _q, _angles, _queries, _scores, _contexts, _attended;

        public static HeadWork ForThisThread() => t_current ??= new HeadWork();

        // Tokens [first, first + count) of the batch; the pointers are pinned by the caller until Finish. Per token of
        // the group: angles holds cos then sin; queries and contexts hold all heads. q and attended cover the batch.
        public void Start(MlaAttention attention, ILatentStore kv, int layer, ForwardBatch batch, int first, int count, int stride,
            float* q, float* angles, float* queries, float* scores, float* contexts, float* attended)
        {
            (_attention, _kv, _layer, _batch, _first, _count, _stride) = (attention, kv, layer, batch, first, count, stride);
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

            // Scores, softmax and latent contexts token by token: each token reads its own sequence's cache.
            var scores = new Span<float>(_scores, heads * _stride);
            for (int t = 0; t < n; t++)
            {
                int token = _first + t, visible = _batch.Positions[token] + 1;
                IReadOnlyList<int> pageTable = _batch.PageTable(_batch.Sequences[token]);
                a.Score(_kv, _layer, pageTable, _batch.PageSize, visible, new ReadOnlySpan<float>(_queries + (long)t * heads * width, heads * width), h0, h1, scores, _stride);
                for (int h = h0; h < h1; h++)
                    TensorPrimitives.SoftMax(scores.Slice(h * _stride, visible), scores.Slice(h * _stride, visible));
                Attend(_kv, _layer, pageTable, _batch.PageSize, visible, scores, _stride, h0, h1, rank, new Span<float>(_contexts + (long)t * heads * rank, heads * rank));
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

        private Span<float> Query(int t, int h, int heads, int width) => new(_queries + ((long)t * heads + h) * width, width);
    }
}
