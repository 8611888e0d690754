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
    private readonly int _denseLayers;
    // Weights each part reads per step, for profiles and traces.
    private readonly PartWeights[] _attentionWeights, _denseWeights, _routerWeights, _sharedWeights, _expertWeights;
    private readonly PartWeights _embeddingRow, _headWeights;

    /// <summary>The architecture.</summary>
    public DeepSeekV3Config Config { get; }

    /// <summary>The weight formats the model computes with.</summary>
    public Precision Precision { get; }

    /// <summary>The attention side.</summary>
    public IAttentionBackend AttentionBackend => _attention;

    /// <summary>The routed-experts side.</summary>
    public IExpertBackend ExpertBackend => _experts;

    /// <summary>The checkpoint the weights are read from (tests check what is mapped in place).</summary>
    internal Checkpoint Checkpoint => _checkpoint;

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
        RefuseQ4KWidths(config, Precision, checkpoint.Location);
        _pool = options.CreatePool();
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
        PartWeights[] Of(Func<int, PartWeights> weights) => [.. Enumerable.Range(0, config.NumHiddenLayers).Select(weights)];
        _attentionWeights = Of(i => _attention.WeightsOf(ModelPart.Attention, i));
        _denseWeights = Of(i => _attention.WeightsOf(ModelPart.DenseMlp, i));
        _routerWeights = Of(i => _attention.WeightsOf(ModelPart.Router, i));
        _sharedWeights = Of(i => _attention.WeightsOf(ModelPart.SharedExperts, i));
        _expertWeights = Of(i => config.IsMoeLayer(i) ? _experts.ExpertWeights(i) : default);
        _embeddingRow = _attention.WeightsOf(ModelPart.Embedding, 0);
        _headWeights = _attention.WeightsOf(ModelPart.Head, 0);
        options.Profile?.Configure(config.NumHiddenLayers, _denseLayers, Precision);
        Trace = new StepTrace(options.Profile);
    }

    /// <summary>Times this model's steps for the profile, events and spans; the engine loop begins and ends its steps around the forward pass.</summary>
    internal StepTrace Trace { get; }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json and safetensors, single or sharded), or a GGUF file
    /// (<c>.gguf</c>, or the first file of a split set; see <see cref="GgufCheckpoint"/> for its types).
    /// </summary>
    /// <exception cref="FileNotFoundException">config.json or the safetensors are missing.</exception>
    /// <exception cref="InvalidDataException">The config or a tensor is malformed, missing or misshapen.</exception>
    public static DeepSeekV3Model Load(string path, ModelLoadOptions? options = null)
    {
        if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(path))
        {
            // The blocks the engine computes (Q4_K and Q6_K tensors, Q4_0 experts, Q8_0 classes) run as they are; a
            // precision preset keeps the K-quant blocks of its Q4_K classes and decodes the rest, quantizing it to the preset.
            (DeepSeekV3Config config, Checkpoint checkpoint) = options?.Precision is { } asked ? GgufCheckpoint.Open(path, asked) : GgufCheckpoint.Open(path);
            return FromCheckpoint(config, checkpoint, options);
        }
        return FromCheckpoint(DeepSeekV3Config.Load(path), Checkpoint.Open(path), options);
    }

    // Q4_K holds whole blocks of 256 columns: a class in Q4_K with narrower matrices is refused before anything loads.
    private static void RefuseQ4KWidths(DeepSeekV3Config config, Precision precision, string location)
    {
        foreach ((string name, long[] shape) in config.TensorShapes())
            if (shape is [_, long cols] && precision.FormatOf(name) == WeightFormat.Q4K && cols % Kernels.KBlockLayout.BlockValues != 0)
                throw new InvalidDataException($"{location}: '{name}' has {cols} columns; Q4_K ({precision.Name(WeightFormat.Q4K)}) needs a multiple of " +
                    $"{Kernels.KBlockLayout.BlockValues}. Choose another format for its class (e.g. the w8a8-int4 preset).");
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

        StepTrace trace = Trace;
        bool ownsStep = !trace.InStep;
        if (ownsStep)
            trace.Begin(n == batch.SequenceCount ? StepKind.Decode : StepKind.Prefill);
        try
        {
            RunLayers(batch, kv, logits[..(rows * Config.VocabSize)], trace, cancellationToken);
        }
        finally
        {
            if (ownsStep)
                trace.End(n, batch.SequenceCount);
        }
    }

    private void RunLayers(ForwardBatch batch, ILatentStore kv, Span<float> logits, StepTrace trace, CancellationToken cancellationToken)
    {
        int n = batch.TokenCount, rows = batch.LogitCount;
        // What attention reads and computes beyond its weights: each sequence's cached rows, each token's scores and contexts.
        long cachedRows = 0, attendedPositions = 0;
        if (trace.Active)
            (cachedRows, attendedPositions) = AttentionExtent(batch);
        long rowBytes = kv.RowWidth * (kv.DType == KvCacheDType.BF16 ? sizeof(ushort) : sizeof(float));
        long attentionMacs = attendedPositions * Config.NumAttentionHeads * (2L * Config.KvLoraRank + Config.QkRopeHeadDim);

        _attention.BeginStep(batch, kv);
        trace.Lap(-1, ModelPart.Embedding, n * _embeddingRow);

        for (int i = 0; i < Config.NumHiddenLayers; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _attention.Attention(i);
            trace.Lap(i, ModelPart.Attention, _attentionWeights[i], cachedRows * rowBytes, n * _attentionWeights[i].Parameters + attentionMacs);
            if (Config.IsMoeLayer(i))
            {
                _attention.Route(i, _routed);
                trace.Lap(i, ModelPart.Router, _routerWeights[i], 0, n * _routerWeights[i].Parameters);
                _experts.Submit(_routed);
                long shared = trace.Active ? Stopwatch.GetTimestamp() : 0, sharedEnd = 0;
                try
                {
                    _attention.SharedExperts(i);
                    sharedEnd = trace.Active ? Stopwatch.GetTimestamp() : 0;
                }
                finally
                {
                    _experts.Wait();
                }
                trace.Nested(shared, sharedEnd, i, ModelPart.SharedExperts, _sharedWeights[i], n * _sharedWeights[i].Parameters);
                _attention.FinishMoe(i, _routed);
                if (trace.Active)
                    trace.Lap(i, ModelPart.RoutedExperts, DistinctExperts() * _expertWeights[i], 0, (long)n * Config.NumExpertsPerTok * _expertWeights[i].Parameters);
            }
            else
            {
                _attention.DenseMlp(i);
                trace.Lap(i, ModelPart.DenseMlp, _denseWeights[i], 0, n * _denseWeights[i].Parameters);
            }
        }

        _attention.Logits(logits);
        // A step whose rows all prefill without sampling reads no head.
        trace.Lap(-1, ModelPart.Head, rows > 0 ? _headWeights : default, 0, rows * _headWeights.Parameters);
    }

    // Rows of KV cache the step's sequences hold (each read once), and positions the tokens attend to, summed.
    private static (long CachedRows, long AttendedPositions) AttentionExtent(ForwardBatch batch)
    {
        ReadOnlySpan<int> positions = batch.Positions, sequences = batch.Sequences;
        long attended = 0, cached = 0;
        for (int t = 0; t < positions.Length; t++)
        {
            attended += positions[t] + 1;
            // A sequence's tokens are consecutive; its last one sees every cached row.
            if (t + 1 == positions.Length || sequences[t + 1] != sequences[t])
                cached += positions[t] + 1;
        }
        return (cached, attended);
    }

    // Experts the layer's tokens chose, each counted once: a step reads each chosen expert's weights once.
    private int DistinctExperts()
    {
        Span<bool> seen = Config.NRoutedExperts <= 1024 ? stackalloc bool[Config.NRoutedExperts] : new bool[Config.NRoutedExperts];
        int distinct = 0;
        foreach (int e in _routed.Experts)
            if (!seen[e])
                (seen[e], distinct) = (true, distinct + 1);
        return distinct;
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
