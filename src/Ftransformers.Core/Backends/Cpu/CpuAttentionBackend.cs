using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// The attention side on the CPU, in managed SIMD code: embeddings, RMSNorm, absorbed MLA over the KV cache, dense
/// MLPs, the router and shared experts of MoE layers, and the head, computed as DeepSeek's reference does.
/// </summary>
internal sealed class CpuAttentionBackend : IAttentionBackend
{
    private readonly DeepSeekV3Config _config;
    private readonly WeightMatrix _embedding, _lmHead;
    private readonly float[] _finalNorm;
    private readonly Layer[] _layers;
    private readonly float _eps;
    private ForwardBatch _batch = null!;
    private ILatentStore _kv = null!;
    private float[] _h = [], _normed = [], _delta = [], _routerLogits = [], _final = [];

    // A MoE layer's router (its gate matrix and selection) and shared experts; the routed experts are elsewhere.
    private sealed record MoeParts(WeightMatrix Gate, MoeRouter Router, Mlp? Shared, float[]? Bias);

    private sealed record Layer(float[] AttentionNorm, MlaAttention Attention, float[] FeedForwardNorm, Mlp? Dense, MoeParts? Moe);

    // Weights read per step by part and layer, counted once at load.
    private readonly Dictionary<(ModelPart, int), PartWeights> _weights = [];

    public CpuAttentionBackend(BackendContext context)
    {
        DeepSeekV3Config config = _config = context.Config;
        Precision precision = context.Precision;
        var weights = new WeightLoader(context.Checkpoint, config.Fp8BlockSize, precision, context.Pool);
        int hidden = config.HiddenSize;
        _eps = (float)config.RmsNormEps;
        _embedding = weights.Matrix("model.embed_tokens.weight", config.VocabSize, hidden);
        _lmHead = config.TieWordEmbeddings && !weights.Contains("lm_head.weight")
            ? weights.Matrix("model.embed_tokens.weight", config.VocabSize, hidden, precision.LmHead)
            : weights.Matrix("lm_head.weight", config.VocabSize, hidden, precision.LmHead);
        _finalNorm = weights.Vector("model.norm.weight", hidden);
        var rope = new RotaryEmbedding(config.QkRopeHeadDim, config.RopeTheta, config.RopeScaling);
        _layers = new Layer[config.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            string p = $"model.layers.{i}";
            bool moe = config.IsMoeLayer(i);
            _layers[i] = new Layer(
                weights.Vector(p + ".input_layernorm.weight", hidden),
                new MlaAttention(weights, config, rope, i),
                weights.Vector(p + ".post_attention_layernorm.weight", hidden),
                moe ? null : Mlp.Load(weights, p + ".mlp", hidden, config.IntermediateSize, precision.DenseMlp),
                moe ? LoadMoeParts(weights, config, p + ".mlp") : null);
        }
        CountWeights();
    }

    private void CountWeights()
    {
        _weights[(ModelPart.Embedding, 0)] = new(_embedding.Footprint.Bytes / _embedding.Rows, 0);
        _weights[(ModelPart.Head, 0)] = WeightMatrix.VectorWeights(_finalNorm) + _lmHead.Footprint;
        for (int i = 0; i < _layers.Length; i++)
        {
            Layer l = _layers[i];
            PartWeights feedForwardNorm = WeightMatrix.VectorWeights(l.FeedForwardNorm);
            _weights[(ModelPart.Attention, i)] = WeightMatrix.VectorWeights(l.AttentionNorm) + l.Attention.Footprint;
            if (l.Dense is { } dense)
                _weights[(ModelPart.DenseMlp, i)] = feedForwardNorm + dense.Footprint;
            if (l.Moe is { } moe)
            {
                _weights[(ModelPart.Router, i)] = feedForwardNorm + moe.Gate.Footprint + (moe.Bias is { } bias ? WeightMatrix.VectorWeights(bias) : default);
                _weights[(ModelPart.SharedExperts, i)] = moe.Shared?.Footprint ?? default;
            }
        }
    }

    public PartWeights WeightsOf(ModelPart part, int layer) =>
        _weights.GetValueOrDefault((part, part is ModelPart.Embedding or ModelPart.Head ? 0 : layer));

    private static MoeParts LoadMoeParts(WeightLoader weights, DeepSeekV3Config config, string prefix)
    {
        string biasName = prefix + ".gate.e_score_correction_bias";
        float[]? bias = weights.Contains(biasName) ? weights.Vector(biasName, config.NRoutedExperts) : null;
        Mlp? shared = config.NSharedExperts > 0
            ? Mlp.Load(weights, prefix + ".shared_experts", config.HiddenSize, config.MoeIntermediateSize * config.NSharedExperts, weights.Precision.SharedExperts)
            : null;
        return new MoeParts(weights.Matrix(prefix + ".gate.weight", config.NRoutedExperts, config.HiddenSize), new MoeRouter(config, bias), shared, bias);
    }

    public string Name => "cpu";

    public ILatentStore CreateKvCache(long slots, KvCacheDType dtype) =>
        new CpuKvCache(_config.NumHiddenLayers, _config.KvLoraRank + _config.QkRopeHeadDim, slots, dtype);

    private int Values => _batch.TokenCount * _config.HiddenSize;

    public void BeginStep(ForwardBatch batch, ILatentStore kv)
    {
        (_batch, _kv) = (batch, kv);
        int n = batch.TokenCount, hidden = _config.HiddenSize;
        Grow(ref _h, n * hidden);
        Grow(ref _normed, n * hidden);
        Grow(ref _delta, n * hidden);
        ReadOnlySpan<int> tokens = batch.Tokens;
        for (int t = 0; t < n; t++)
            _embedding.CopyRow(tokens[t], _h.AsSpan(t * hidden, hidden));
    }

    public void Attention(int layer)
    {
        Layer l = _layers[layer];
        Span<float> h = _h.AsSpan(0, Values), normed = _normed.AsSpan(0, Values), delta = _delta.AsSpan(0, Values);
        NormRows(h, l.AttentionNorm, normed);
        l.Attention.Forward(normed, delta, _batch, _kv, layer);
        TensorPrimitives.Add(h, delta, h);
    }

    public void DenseMlp(int layer)
    {
        Layer l = _layers[layer];
        Mlp dense = l.Dense ?? throw new InvalidOperationException($"Layer {layer} is a MoE layer, not a dense one.");
        Span<float> h = _h.AsSpan(0, Values), normed = _normed.AsSpan(0, Values), delta = _delta.AsSpan(0, Values);
        NormRows(h, l.FeedForwardNorm, normed);
        dense.Forward(normed, delta, _batch.TokenCount);
        TensorPrimitives.Add(h, delta, h);
    }

    public void Route(int layer, ExpertBatch experts)
    {
        Layer l = _layers[layer];
        MoeParts moe = l.Moe ?? throw new InvalidOperationException($"Layer {layer} is a dense layer, not a MoE one.");
        int n = _batch.TokenCount, count = _config.NRoutedExperts, k = experts.TopK;
        Span<float> normed = _normed.AsSpan(0, Values);
        NormRows(_h.AsSpan(0, Values), l.FeedForwardNorm, normed);
        Grow(ref _routerLogits, n * count);
        Span<float> logits = _routerLogits.AsSpan(0, n * count);
        moe.Gate.Multiply(normed, logits, n);
        experts.Reset(layer, n);
        Span<int> chosen = experts.Experts;
        Span<float> weights = experts.Weights;
        for (int t = 0; t < n; t++)
            moe.Router.Route(logits.Slice(t * count, count), chosen.Slice(t * k, k), weights.Slice(t * k, k));
        normed.CopyTo(experts.Input);
    }

    // Runs on the calling thread while the pool's workers stream the routed experts (its products run inline during
    // their job); MoeLayerBenchmark measured this at least as fast as all threads streaming each in turn.
    public void SharedExperts(int layer)
    {
        Span<float> delta = _delta.AsSpan(0, Values);
        if (_layers[layer].Moe?.Shared is { } shared)
            shared.Forward(_normed.AsSpan(0, Values), delta, _batch.TokenCount);
        else
            delta.Clear();
    }

    public void FinishMoe(int layer, ExpertBatch experts)
    {
        // The reference adds the shared experts to the routed sum, then the sum to the residual.
        Span<float> h = _h.AsSpan(0, Values), delta = _delta.AsSpan(0, Values);
        TensorPrimitives.Add(experts.Output, delta, delta);
        TensorPrimitives.Add(h, delta, h);
    }

    public void Logits(Span<float> logits)
    {
        int rows = _batch.LogitCount, hidden = _config.HiddenSize;
        Grow(ref _final, rows * hidden);
        Span<float> final = _final.AsSpan(0, rows * hidden);
        ReadOnlySpan<int> logitRows = _batch.LogitRows;
        for (int r = 0; r < rows; r++)
            RmsNorm.Apply(_h.AsSpan(logitRows[r] * hidden, hidden), _finalNorm, _eps, final.Slice(r * hidden, hidden));
        _lmHead.Multiply(final, logits, rows);
    }

    private void NormRows(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> destination)
    {
        int width = weight.Length;
        for (int offset = 0; offset < x.Length; offset += width)
            RmsNorm.Apply(x.Slice(offset, width), weight, _eps, destination.Slice(offset, width));
    }

    private static void Grow(ref float[] array, int length)
    {
        if (array.Length < length)
            array = new float[Math.Max(length, array.Length + array.Length / 2)];
    }

    // The weights belong to the model's checkpoint (mapped) or to the GC (quantized copies).
    public void Dispose()
    {
    }
}
