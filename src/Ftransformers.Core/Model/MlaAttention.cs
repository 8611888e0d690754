using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Memory;

namespace Ftransformers.Model;

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
        using var q = new PooledBuffer(tokens * heads * qkHead);
        using var kvA = new PooledBuffer(tokens * width);
        using var queries = new PooledBuffer(heads * width);
        using var contexts = new PooledBuffer(heads * rank);
        using var scores = new PooledBuffer(heads * maxVisible);
        using var attended = new PooledBuffer(tokens * heads * vHead);
        Span<float> cos = stackalloc float[rope / 2], sin = stackalloc float[rope / 2];

        if (_qA != null)
        {
            using var qa = new PooledBuffer(tokens * _qA.Rows);
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
        for (int t = 0; t < tokens; t++)
        {
            Span<float> row = kvA.Span.Slice(t * width, width);
            RmsNorm.Apply(row[..rank], _kvANorm, eps, row[..rank]);
            _rope.Angles(positions[t], cos, sin);
            Rope.ApplyInterleaved(row[rank..], cos, sin);
            kv.Write(layer, batch.Slot(sequences[t], positions[t]), row);
        }

        // Per token: each head's query in latent space [q_nope W_uk | q_pe]; scores over the visible positions, read
        // one cached row at a time for a range of heads; softmax per head; latent context; the head's output through
        // W_uv. Heads are independent, so the compute pool splits them.
        HeadWork work = HeadWork.ForThisThread();
        unsafe
        {
            // Pinned for the workers, which read and write these buffers through pointers.
            fixed (float* pq = q.Span, pQueries = queries.Span, pScores = scores.Span, pContexts = contexts.Span, pAttended = attended.Span)
            {
                for (int t = 0; t < tokens; t++)
                {
                    _rope.Angles(positions[t], cos, sin);
                    work.Start(this, kv, layer, batch.PageTable(sequences[t]), batch.PageSize, positions[t] + 1, cos, sin,
                        pq + t * heads * qkHead, pQueries, pScores, pContexts, pAttended + t * heads * vHead);
                    if (_o.Pool is { } pool)
                        pool.For(heads, work, minChunk: Math.Max(1, (1 << 15) / Math.Max(1, (positions[t] + 1) * width + nope * rank * 2)));
                    else
                        work.Run(0, heads);
                    work.Finish();
                }
            }
        }
        _o.Multiply(attended.Span, y, tokens);
    }

    // scores[h * visible + j] = scale * (query_h . row_j) for heads [h0, h1) and the visible positions j, page by page.
    private void Score(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible, ReadOnlySpan<float> queries, int h0, int h1, Span<float> scores)
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
                        scores[h * visible + j] = TensorPrimitives.Dot(queries.Slice(h * width, width), row) * _softmaxScale;
                }
                else
                {
                    ReadOnlySpan<ushort> row = kv.RowBf16(layer, slot);
                    for (int h = h0; h < h1; h++)
                        scores[h * visible + j] = BFloat16.Dot(row, queries.Slice(h * width, width)) * _softmaxScale;
                }
            }
        }
    }

    // contexts[h] = sum over visible positions j of weights[h * visible + j] * latent_j, in position order, for heads [h0, h1).
    private static void Attend(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible, ReadOnlySpan<float> weights, int h0, int h1, int rank, Span<float> contexts)
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
                        TensorPrimitives.MultiplyAdd(latent, weights[h * visible + j], context, context);
                    }
                }
                else
                {
                    ReadOnlySpan<ushort> latent = kv.RowBf16(layer, slot)[..rank];
                    for (int h = h0; h < h1; h++)
                        BFloat16.MultiplyAdd(latent, weights[h * visible + j], contexts.Slice(h * rank, rank));
                }
            }
        }
    }

    // One token's attention over a range of heads, handed to the compute pool; one per calling thread.
    private sealed unsafe class HeadWork : IRangeWork
    {
        [ThreadStatic]
        private static HeadWork? t_current;

        private MlaAttention _attention = null!;
        private ILatentStore _kv = null!;
        private IReadOnlyList<int> _pageTable = null!;
        private int _layer, _pageSize, _visible;
        private readonly float[] _cos = new float[256], _sin = new float[256];
        private float* _q, _queries, _scores, _contexts, _attended;

        public static HeadWork ForThisThread() => t_current ??= new HeadWork();

        // The pointers are pinned by the caller until Finish.
        public void Start(MlaAttention attention, ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible,
            ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, float* q, float* queries, float* scores, float* contexts, float* attended)
        {
            (_attention, _kv, _layer, _pageTable, _pageSize, _visible) = (attention, kv, layer, pageTable, pageSize, visible);
            cos.CopyTo(_cos);
            sin.CopyTo(_sin);
            _q = q;
            _queries = queries;
            _scores = scores;
            _contexts = contexts;
            _attended = attended;
        }

        public void Finish()
        {
            _attention = null!;
            _kv = null!;
            _pageTable = null!;
        }

        public void Run(int h0, int h1)
        {
            MlaAttention a = _attention;
            DeepSeekV3Config c = a._config;
            int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, rank = c.KvLoraRank;
            int qkHead = c.QkHeadDim, vHead = c.VHeadDim, kvbHead = nope + vHead, width = rank + rope, visible = _visible;
            var queries = new Span<float>(_queries, heads * width);
            var scores = new Span<float>(_scores, heads * visible);
            var contexts = new Span<float>(_contexts, heads * rank);
            ReadOnlySpan<float> cos = _cos.AsSpan(0, rope / 2), sin = _sin.AsSpan(0, rope / 2);
            for (int h = h0; h < h1; h++)
            {
                var qHead = new Span<float>(_q + h * qkHead, qkHead);
                Span<float> query = queries.Slice(h * width, width);
                a._kvB.MultiplyTransposedRows(h * kvbHead, nope, qHead[..nope], query[..rank]);
                qHead.Slice(nope, rope).CopyTo(query[rank..]);
                Rope.ApplyInterleaved(query[rank..], cos, sin);
            }
            a.Score(_kv, _layer, _pageTable, _pageSize, visible, queries, h0, h1, scores);
            for (int h = h0; h < h1; h++)
                TensorPrimitives.SoftMax(scores.Slice(h * visible, visible), scores.Slice(h * visible, visible));
            Attend(_kv, _layer, _pageTable, _pageSize, visible, scores, h0, h1, rank, contexts);
            for (int h = h0; h < h1; h++)
                a._kvB.MultiplyRows(h * kvbHead + nope, vHead, contexts.Slice(h * rank, rank), new Span<float>(_attended + h * vHead, vHead));
        }
    }
}
