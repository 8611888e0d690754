using System.Numerics.Tensors;
using Ftransformers.Kernels;

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
    /// Attends <paramref name="tokens"/> new tokens at positions cache.Length.. (causally, over the cache and each
    /// other), writing their latents to <paramref name="cache"/> for <paramref name="layer"/>.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int tokens, SequenceKvCache cache, int layer)
    {
        DeepSeekV3Config c = _config;
        int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, rank = c.KvLoraRank;
        int qkHead = c.QkHeadDim, vHead = c.VHeadDim, kvbHead = nope + vHead, start = cache.Length;
        float eps = (float)c.RmsNormEps;

        var q = new float[tokens * heads * qkHead];
        if (_qA != null)
        {
            var qa = new float[tokens * _qA.Rows];
            _qA.Multiply(x, qa, tokens);
            RmsNorm.ApplyRows(qa, _qA.Rows, _qANorm, eps);
            _q!.Multiply(qa, q, tokens);
        }
        else
        {
            _q!.Multiply(x, q, tokens);
        }

        var kv = new float[tokens * (rank + rope)];
        _kvA.Multiply(x, kv, tokens);
        for (int t = 0; t < tokens; t++)
        {
            Span<float> row = cache.Row(layer, start + t);
            RmsNorm.Apply(kv.AsSpan(t * (rank + rope), rank), _kvANorm, eps, row[..rank]);
            kv.AsSpan(t * (rank + rope) + rank, rope).CopyTo(row[rank..]);
            _rope.Apply(row[rank..], start + t);
        }

        // Per token and head: query in latent space [q_nope W_uk | q_pe], scores over the cache, latent context,
        // then the head's output through W_uv.
        var query = new float[rank + rope];
        var context = new float[rank];
        var scores = new float[start + tokens];
        var attended = new float[tokens * heads * vHead];
        for (int t = 0; t < tokens; t++)
        {
            int visible = start + t + 1;
            ReadOnlySpan<float> keys = cache.Rows(layer, visible);
            for (int h = 0; h < heads; h++)
            {
                Span<float> qHead = q.AsSpan((t * heads + h) * qkHead, qkHead);
                _kvB.MultiplyTransposedRows(h * kvbHead, nope, qHead[..nope], query.AsSpan(0, rank));
                qHead.Slice(nope, rope).CopyTo(query.AsSpan(rank));
                _rope.Apply(query.AsSpan(rank), start + t);

                Span<float> s = scores.AsSpan(0, visible);
                for (int j = 0; j < visible; j++)
                    s[j] = TensorPrimitives.Dot(query, keys.Slice(j * (rank + rope), rank + rope)) * _softmaxScale;
                TensorPrimitives.SoftMax(s, s);

                context.AsSpan().Clear();
                for (int j = 0; j < visible; j++)
                    TensorPrimitives.MultiplyAdd(keys.Slice(j * (rank + rope), rank), s[j], context, context);
                _kvB.MultiplyRows(h * kvbHead + nope, vHead, context, attended.AsSpan((t * heads + h) * vHead, vHead));
            }
        }
        _o.Multiply(attended, y, tokens);
    }
}
