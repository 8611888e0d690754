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
        // one cached row at a time for all heads; softmax per head; latent context; the head's output through W_uv.
        for (int t = 0; t < tokens; t++)
        {
            int visible = positions[t] + 1;
            _rope.Angles(positions[t], cos, sin);
            for (int h = 0; h < heads; h++)
            {
                Span<float> qHead = q.Span.Slice((t * heads + h) * qkHead, qkHead);
                Span<float> query = queries.Span.Slice(h * width, width);
                _kvB.MultiplyTransposedRows(h * kvbHead, nope, qHead[..nope], query[..rank]);
                qHead.Slice(nope, rope).CopyTo(query[rank..]);
                Rope.ApplyInterleaved(query[rank..], cos, sin);
            }

            Span<float> s = scores.Span[..(heads * visible)];
            Score(kv, layer, batch.PageTable(sequences[t]), batch.PageSize, visible, queries.Span, heads, s);
            for (int h = 0; h < heads; h++)
                TensorPrimitives.SoftMax(s.Slice(h * visible, visible), s.Slice(h * visible, visible));
            Attend(kv, layer, batch.PageTable(sequences[t]), batch.PageSize, visible, s, heads, rank, contexts.Span);
            for (int h = 0; h < heads; h++)
                _kvB.MultiplyRows(h * kvbHead + nope, vHead, contexts.Span.Slice(h * rank, rank), attended.Span.Slice((t * heads + h) * vHead, vHead));
        }
        _o.Multiply(attended.Span, y, tokens);
    }

    // scores[h * visible + j] = scale * (query_h . row_j) for the visible positions j, page by page.
    private void Score(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible, ReadOnlySpan<float> queries, int heads, Span<float> scores)
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
                    for (int h = 0; h < heads; h++)
                        scores[h * visible + j] = TensorPrimitives.Dot(queries.Slice(h * width, width), row) * _softmaxScale;
                }
                else
                {
                    ReadOnlySpan<ushort> row = kv.RowBf16(layer, slot);
                    for (int h = 0; h < heads; h++)
                        scores[h * visible + j] = BFloat16.Dot(row, queries.Slice(h * width, width)) * _softmaxScale;
                }
            }
        }
    }

    // contexts[h] = sum over visible positions j of weights[h * visible + j] * latent_j, in position order.
    private static void Attend(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int visible, ReadOnlySpan<float> weights, int heads, int rank, Span<float> contexts)
    {
        contexts[..(heads * rank)].Clear();
        bool f32 = kv.DType == KvCacheDType.F32;
        for (int page = 0, j = 0; j < visible; page++)
        {
            long slot = (long)pageTable[page] * pageSize;
            for (int end = Math.Min(visible, j + pageSize); j < end; j++, slot++)
            {
                if (f32)
                {
                    ReadOnlySpan<float> latent = kv.RowF32(layer, slot)[..rank];
                    for (int h = 0; h < heads; h++)
                    {
                        Span<float> context = contexts.Slice(h * rank, rank);
                        TensorPrimitives.MultiplyAdd(latent, weights[h * visible + j], context, context);
                    }
                }
                else
                {
                    ReadOnlySpan<ushort> latent = kv.RowBf16(layer, slot)[..rank];
                    for (int h = 0; h < heads; h++)
                        BFloat16.MultiplyAdd(latent, weights[h * visible + j], contexts.Slice(h * rank, rank));
                }
            }
        }
    }
}
