using System.Diagnostics;
using System.Numerics.Tensors;
using Ftransformers.Formats;
using Ftransformers.Kernels;
using Ftransformers.Memory;

namespace Ftransformers.Model;

/// <summary>
/// A DeepSeek-V3-class transformer over a checkpoint: embeddings, layers of MLA attention with a dense MLP or a
/// MoE block, final norm and lm_head, computed in F32. Holds the checkpoint's mapping open until disposed.
/// </summary>
public sealed class DeepSeekV3Model : IDisposable
{
    private readonly Checkpoint _checkpoint;
    private readonly WeightMatrix _embedding, _lmHead;
    private readonly float[] _finalNorm;
    private readonly Layer[] _layers;
    private readonly Kernels.ComputePool? _pool;
    private readonly ForwardProfile? _profile;
    private readonly int _denseLayers;

    private sealed record Layer(float[] AttentionNorm, MlaAttention Attention, float[] FeedForwardNorm, Mlp? Dense, MoeBlock? Moe);

    /// <summary>The architecture.</summary>
    public DeepSeekV3Config Config { get; }

    /// <summary>The weight formats the model computes with.</summary>
    public Precision Precision { get; }

    private DeepSeekV3Model(DeepSeekV3Config config, Checkpoint checkpoint, ModelLoadOptions options)
    {
        options.Validate();
        Config = config;
        _checkpoint = checkpoint;
        if (config.ConvertedPrecision is { } converted && options.Precision is { } asked && asked != converted)
            throw new ArgumentException($"{checkpoint.Location} was converted to {converted.Describe()}; it cannot be loaded as {asked.Describe()}. Load it without a precision, or convert the original again.");
        Precision = config.ConvertedPrecision ?? options.Precision ?? Precision.F32;
        _pool = options.CreatePool();
        _profile = options.Profile;
        var weights = new WeightLoader(checkpoint, config.Fp8BlockSize, Precision, _pool);
        int hidden = config.HiddenSize;
        _embedding = weights.Matrix("model.embed_tokens.weight", config.VocabSize, hidden);
        _lmHead = config.TieWordEmbeddings && !weights.Contains("lm_head.weight")
            ? weights.Matrix("model.embed_tokens.weight", config.VocabSize, hidden, Precision.LmHead)
            : weights.Matrix("lm_head.weight", config.VocabSize, hidden, Precision.LmHead);
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
                moe ? null : Mlp.Load(weights, p + ".mlp", hidden, config.IntermediateSize, Precision.DenseMlp),
                moe ? MoeBlock.Load(weights, config, i) : null);
            _denseLayers += moe ? 0 : 1;
        }
    }

    /// <summary>Loads a Hugging Face checkpoint folder (config.json and safetensors, single or sharded).</summary>
    /// <exception cref="FileNotFoundException">config.json or the safetensors are missing.</exception>
    /// <exception cref="InvalidDataException">The config or a tensor is malformed, missing or misshapen.</exception>
    public static DeepSeekV3Model Load(string directory, ModelLoadOptions? options = null) =>
        FromCheckpoint(DeepSeekV3Config.Load(directory), Checkpoint.Open(directory), options);

    /// <summary>Builds the model over an open checkpoint, taking ownership of it.</summary>
    public static DeepSeekV3Model FromCheckpoint(DeepSeekV3Config config, Checkpoint checkpoint, ModelLoadOptions? options = null)
    {
        try
        {
            return new DeepSeekV3Model(config, checkpoint, options ?? new ModelLoadOptions());
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> after the tokens already in <paramref name="cache"/>, appending their KV, and
    /// writes logits for every new position (<paramref name="allPositions"/>) or only the last one.
    /// </summary>
    /// <returns>Row-major logits: [tokens, vocab] or [1, vocab].</returns>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary or the context is full.</exception>
    public float[] Forward(ReadOnlySpan<int> tokens, SequenceKvCache cache, bool allPositions = false, CancellationToken cancellationToken = default)
    {
        int n = tokens.Length;
        if (n == 0)
            throw new ArgumentException("Forward needs at least one token.", nameof(tokens));
        CheckVocabulary(tokens);
        cache.Reserve(n);
        var batch = new ForwardBatch();
        batch.Clear(cache.PageSize);
        batch.AddSequence(tokens, cache.Length, cache.PageTable, logits: true, allLogits: allPositions);
        var logits = new float[batch.LogitCount * Config.VocabSize];
        Forward(batch, cache, logits, cancellationToken);
        cache.Commit(n);
        return logits;
    }

    /// <summary>
    /// One forward pass over every token of <paramref name="batch"/> (any mix of sequences, prefill chunks and decode
    /// tokens): writes their KV to <paramref name="kv"/> and the logits of <see cref="ForwardBatch.LogitRows"/> to
    /// <paramref name="logits"/> ([LogitCount, vocab]). Each token's result depends only on its own sequence.
    /// </summary>
    internal void Forward(ForwardBatch batch, ILatentStore kv, Span<float> logits, CancellationToken cancellationToken = default)
    {
        int n = batch.TokenCount, hidden = Config.HiddenSize, rows = batch.LogitCount;
        if (n == 0)
            throw new ArgumentException("Forward needs at least one token.", nameof(batch));
        if (logits.Length < rows * Config.VocabSize)
            throw new ArgumentException($"{rows} logit rows need {rows * Config.VocabSize} values, got {logits.Length}.", nameof(logits));
        if (kv.RowWidth != Config.KvLoraRank + Config.QkRopeHeadDim)
            throw new ArgumentException($"The KV store holds rows of {kv.RowWidth} values; the model needs kv_lora_rank + qk_rope_head_dim = {Config.KvLoraRank + Config.QkRopeHeadDim}.", nameof(kv));
        CheckVocabulary(batch.Tokens);
        foreach (int position in batch.Positions)
            if ((uint)position >= (uint)Config.MaxPositionEmbeddings)
                throw new ArgumentOutOfRangeException(nameof(batch), $"Position {position} is beyond max_position_embeddings ({Config.MaxPositionEmbeddings}).");

        using var hBuffer = new PooledBuffer<float>(n * hidden);
        using var normedBuffer = new PooledBuffer<float>(n * hidden);
        using var deltaBuffer = new PooledBuffer<float>(n * hidden);
        Span<float> h = hBuffer.Span, normed = normedBuffer.Span, delta = deltaBuffer.Span;
        // Decode steps only: one token per sequence.
        ForwardProfile? profile = n == batch.SequenceCount ? _profile : null;
        long mark = profile != null ? Stopwatch.GetTimestamp() : 0;
        long head = 0, attention = 0, denseMlp = 0, moe = 0;
        ReadOnlySpan<int> tokens = batch.Tokens;
        for (int t = 0; t < n; t++)
            _embedding.CopyRow(tokens[t], h.Slice(t * hidden, hidden));
        if (profile != null)
            head += Lap(ref mark);

        float eps = (float)Config.RmsNormEps;
        for (int i = 0; i < _layers.Length; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Layer layer = _layers[i];
            NormRows(h, layer.AttentionNorm, eps, normed);
            layer.Attention.Forward(normed, delta, batch, kv, i);
            TensorPrimitives.Add(h, delta, h);
            if (profile != null)
                attention += Lap(ref mark);

            NormRows(h, layer.FeedForwardNorm, eps, normed);
            if (layer.Moe != null)
                layer.Moe.Forward(normed, delta, n);
            else
                layer.Dense!.Forward(normed, delta, n);
            TensorPrimitives.Add(h, delta, h);
            if (profile != null)
            {
                if (layer.Moe != null)
                    moe += Lap(ref mark);
                else
                    denseMlp += Lap(ref mark);
            }
        }

        using var finalBuffer = new PooledBuffer<float>(rows * hidden);
        Span<float> final = finalBuffer.Span;
        ReadOnlySpan<int> logitRows = batch.LogitRows;
        for (int r = 0; r < rows; r++)
            RmsNorm.Apply(h.Slice(logitRows[r] * hidden, hidden), _finalNorm, eps, final.Slice(r * hidden, hidden));
        _lmHead.Multiply(final, logits, rows);
        if (profile != null)
        {
            head += Lap(ref mark);
            profile.AddDecodeStep(n, _denseLayers, _layers.Length - _denseLayers, head, attention, denseMlp, moe);
        }
    }

    // Ticks since mark, moving the mark to now.
    private static long Lap(ref long mark)
    {
        long now = Stopwatch.GetTimestamp(), elapsed = now - mark;
        mark = now;
        return elapsed;
    }

    private void CheckVocabulary(ReadOnlySpan<int> tokens)
    {
        foreach (int id in tokens)
            if ((uint)id >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"Token id {id} is outside the vocabulary (size {Config.VocabSize}).");
    }

    private static void NormRows(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> destination)
    {
        int width = weight.Length;
        for (int offset = 0; offset < x.Length; offset += width)
            RmsNorm.Apply(x.Slice(offset, width), weight, eps, destination.Slice(offset, width));
    }

    /// <summary>Releases the checkpoint's mapping.</summary>
    public void Dispose()
    {
        _pool?.Dispose();
        _checkpoint.Dispose();
    }
}
