using System.Diagnostics;
using System.Numerics.Tensors;
using Ftransformers.Backends;
using Ftransformers.Formats;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Threading;
using Ftransformers.Model;

namespace Ftransformers.Inference;

/// <summary>
/// A DeepSeek-V3-class transformer over a checkpoint, as a thin layer loop over two backends: an
/// <see cref="IAttentionBackend"/> (embeddings, MLA attention, dense MLPs, router, shared experts, head) and an
/// <see cref="IExpertBackend"/> (the routed experts), each loading its own tensors by name and selected by
/// <see cref="ModelLoadOptions"/>. In a MoE layer the attention side computes the shared experts while the routed ones
/// run. Holds the checkpoint's mapping open until disposed.
/// </summary>
public sealed class DeepSeekV3Model : IDisposable
{
    private readonly Checkpoint _checkpoint;
    private readonly IAttentionBackend _attention;
    private readonly IExpertBackend _experts;
    private readonly ExpertBatch _routed;
    private readonly ComputePool? _pool;
    private readonly ForwardProfile? _profile;
    private readonly int _denseLayers;

    /// <summary>The architecture.</summary>
    public DeepSeekV3Config Config { get; }

    /// <summary>The weight formats the model computes with.</summary>
    public Precision Precision { get; }

    /// <summary>The attention side.</summary>
    public IAttentionBackend AttentionBackend => _attention;

    /// <summary>The routed-experts side.</summary>
    public IExpertBackend ExpertBackend => _experts;

    /// <summary>Where the CPU compute threads run (null: the calling thread alone).</summary>
    public CpuTopology? Topology => _pool?.Topology;

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
        try
        {
            var context = new BackendContext(config, checkpoint, Precision, _pool);
            _attention = BackendRegistry.CreateAttention(options.AttentionBackend, context);
            _experts = BackendRegistry.CreateExperts(options.ExpertBackend, context);
        }
        catch
        {
            _attention?.Dispose();
            _pool?.Dispose();
            throw;
        }
        _routed = new ExpertBatch(config.HiddenSize, config.NumExpertsPerTok);
        for (int i = 0; i < config.NumHiddenLayers; i++)
            _denseLayers += config.IsMoeLayer(i) ? 0 : 1;
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json and safetensors, single or sharded), or a GGUF file
    /// (<c>.gguf</c>, or the first file of a split set) of F32, F16 or BF16 tensors.
    /// </summary>
    /// <exception cref="FileNotFoundException">config.json or the safetensors are missing.</exception>
    /// <exception cref="InvalidDataException">The config or a tensor is malformed, missing or misshapen.</exception>
    public static DeepSeekV3Model Load(string path, ModelLoadOptions? options = null)
    {
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(path))
        {
            (DeepSeekV3Config config, Checkpoint checkpoint) = GgufCheckpoint.Open(path);
            return FromCheckpoint(config, checkpoint, options);
        }
        return FromCheckpoint(DeepSeekV3Config.Load(path), Checkpoint.Open(path), options);
    }

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
        int n = batch.TokenCount, rows = batch.LogitCount;
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

        // Decode steps only: one token per sequence.
        ForwardProfile? profile = n == batch.SequenceCount ? _profile : null;
        long mark = profile != null ? Stopwatch.GetTimestamp() : 0;
        long head = 0, attention = 0, denseMlp = 0, moe = 0;
        _attention.BeginStep(batch, kv);
        if (profile != null)
            head += Lap(ref mark);

        for (int i = 0; i < Config.NumHiddenLayers; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _attention.Attention(i);
            if (profile != null)
                attention += Lap(ref mark);
            if (Config.IsMoeLayer(i))
            {
                _attention.Route(i, _routed);
                _experts.Submit(_routed);
                try
                {
                    _attention.SharedExperts(i);
                }
                finally
                {
                    _experts.Wait();
                }
                _attention.FinishMoe(i, _routed);
                if (profile != null)
                    moe += Lap(ref mark);
            }
            else
            {
                _attention.DenseMlp(i);
                if (profile != null)
                    denseMlp += Lap(ref mark);
            }
        }

        _attention.Logits(logits[..(rows * Config.VocabSize)]);
        if (profile != null)
        {
            head += Lap(ref mark);
            profile.AddDecodeStep(n, _denseLayers, Config.NumHiddenLayers - _denseLayers, head, attention, denseMlp, moe);
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

    /// <summary>Releases the checkpoint's mapping.</summary>
    public void Dispose()
    {
        _experts.Dispose();
        _attention.Dispose();
        _pool?.Dispose();
        _checkpoint.Dispose();
    }
}
