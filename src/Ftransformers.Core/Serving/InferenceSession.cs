using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Ftransformers.Formats;
using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Serving;
using Ftransformers.Tokenization;
using Ftransformers.Inference;
using Ftransformers.Generation;
using Ftransformers.Generation.Grammar;

namespace Ftransformers.Serving;

/// <summary>
/// Serves requests on one model, many at a time: each request is encoded and queued; one engine loop thread
/// batches the decode tokens of all running requests with chunks of waiting prompts into one forward pass per step,
/// over a paged KV cache whose prefixes are reused across requests; text streams back as it completes.
/// </summary>
public sealed class InferenceSession : IInferenceSession
{
    private readonly DeepSeekV3Model _model;
    private readonly HashSet<int> _eos;
    private readonly KvCachePool _pool;
    private readonly ILatentStore _kv;
    private readonly PrefixCache? _prefixCache;
    private readonly EngineLoop _engine;
    private readonly RequestGrammars _grammars;
    private readonly int _maxTotalTokens, _maxLength;
    private long _nextId;
    private int _disposed;

    /// <inheritdoc/>
    public DeepSeekV3Config Config { get; }

    /// <inheritdoc/>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>The options the session runs with.</summary>
    public InferenceSessionOptions Options { get; }

    /// <summary>Creates a session with default serving options over a model (owned: disposed with the session, so never shared by two sessions) and a tokenizer.</summary>
    /// <exception cref="ArgumentException">The tokenizer produces ids the model's vocabulary lacks.</exception>
    public InferenceSession(DeepSeekV3Model model, ITextTokenizer tokenizer)
        : this(model, tokenizer, new InferenceSessionOptions())
    {
    }

    /// <summary>
    /// Creates a session over a model (owned: disposed with the session, so never shared by two sessions) and a tokenizer, with the serving options of
    /// <paramref name="options"/> (its Model and Tokenizer are not used here).
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizer produces ids the model's vocabulary lacks, or an option is out of range.</exception>
    public InferenceSession(DeepSeekV3Model model, ITextTokenizer tokenizer, InferenceSessionOptions options)
        : this(model, tokenizer, options, poolTokens: null)
    {
    }

    // poolTokens: the pool Load planned before loading, when MaxTotalTokens is unset.
    private InferenceSession(DeepSeekV3Model model, ITextTokenizer tokenizer, InferenceSessionOptions options, int? poolTokens)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (tokenizer.VocabSize > model.Config.VocabSize)
            throw new ArgumentException($"The tokenizer's vocabulary ({tokenizer.VocabSize} ids) exceeds the model's ({model.Config.VocabSize}).", nameof(tokenizer));
        _model = model;
        Tokenizer = tokenizer;
        ChatFormat = options.ChatFormat ?? (tokenizer as DeepSeekTokenizer)?.ChatFormat ?? ChatFormat.DeepSeekV3;
        _grammars = new RequestGrammars(tokenizer, ChatFormat);
        Options = options;
        _eos = [.. model.Config.EosTokenIds, tokenizer.EosTokenId];

        if (options.ContextLength > model.Config.MaxPositionEmbeddings)
            throw new ArgumentOutOfRangeException(nameof(options), $"ContextLength {options.ContextLength} exceeds the model's context ({model.Config.MaxPositionEmbeddings}); it may only shorten it.");
        // The session serves the model's architecture with its context cut to ContextLength; the model keeps its own.
        DeepSeekV3Config config = Config = model.Config with { MaxPositionEmbeddings = options.ContextLength ?? model.Config.MaxPositionEmbeddings };
        // The model is loaded: what is left beside it holds the pool and the scratch, or the session is refused.
        MemoryPlan plan = MemoryPlan.Create(config, options with { MaxTotalTokens = options.MaxTotalTokens ?? poolTokens }, TensorDType.F32, weightsLoaded: true);
        plan.EnsureFits(options);
        _maxTotalTokens = options.MaxTotalTokens ?? checked((int)plan.KvTokens);
        int pageSize = options.KvCachePageSize;
        int pages = checked((int)(((long)_maxTotalTokens + pageSize - 1) / pageSize));
        _pool = new KvCachePool(pageSize, pages);
        // The pages' rows live in the attention backend's memory.
        _kv = model.AttentionBackend.CreateKvCache(_pool.CapacityTokens, options.KvCacheDType);
        _maxLength = (int)Math.Min(config.MaxPositionEmbeddings, _pool.CapacityTokens);
        _prefixCache = options.EnablePrefixCache ? new PrefixCache(_pool) : null;
        var scheduler = new BatchScheduler(_pool, _kv, _prefixCache, options.PrefillTokensPerStep, options.MaxRunningRequests);
        _engine = new EngineLoop(scheduler, new ModelRunner(model, _pool, _kv), _pool, _prefixCache, options.MaxWaitingRequests);
    }

    /// <summary>
    /// Loads a session: <paramref name="model"/> is a checkpoint folder or <c>synthetic:NAME</c>. The tokenizer comes
    /// from <paramref name="tokenizerDirectory"/>, else the model folder's tokenizer.json, else the byte tokenizer.
    /// </summary>
    public static InferenceSession Load(string model, string? tokenizerDirectory = null) =>
        Load(new InferenceSessionOptions { Model = model, Tokenizer = tokenizerDirectory });

    /// <summary>Loads a session as <paramref name="options"/> describe.</summary>
    public static InferenceSession Load(InferenceSessionOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Model))
            throw new ArgumentException("Model must name a checkpoint folder or synthetic:NAME.", nameof(options));
        options.Validate();
        string model = options.Model;
        string? tokenizerDirectory = options.Tokenizer;
        MemoryPlan plan = PlanMemory(options);
        plan.EnsureFits(options);
        DeepSeekV3Model loaded = model.StartsWith(SyntheticModels.Prefix, StringComparison.Ordinal)
            ? SyntheticModel(model[SyntheticModels.Prefix.Length..], options.ToModelLoadOptions())
            : DeepSeekV3Model.Load(model, options.ToModelLoadOptions());
        try
        {
            // The tokenizer: as given, else beside the checkpoint, else inside a GGUF file that carries one.
            string? dir = tokenizerDirectory ?? (File.Exists(Path.Combine(model, "tokenizer.json")) ? model : CarriesTokenizer(model) ? model : null);
            ITextTokenizer tokenizer = dir != null ? DeepSeekTokenizer.Load(dir) : ByteTokenizer.Instance;
            return new InferenceSession(loaded, tokenizer, options, options.MaxTotalTokens == null ? checked((int)plan.KvTokens) : null);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    /// <summary>
    /// What a session of <paramref name="options"/> will hold (weights per node, KV pool, scratch), worked out from the
    /// model's config before anything large is loaded; <see cref="MemoryPlan.Fits"/> says whether the machine has it.
    /// </summary>
    /// <exception cref="FileNotFoundException">The model's config is missing.</exception>
    public static MemoryPlan PlanMemory(InferenceSessionOptions options)
    {
        string model = options.Model;
        IReadOnlyList<int>? nodes = Threading.CpuTopology.ForComputeThreads(options.CpuThreads, options.NumaNodes)?.Nodes.Select(n => n.Cpus.Count).ToArray();
        DeepSeekV3Config Shortened(DeepSeekV3Config c) =>
            options.ContextLength is { } context ? c with { MaxPositionEmbeddings = Math.Min(context, c.MaxPositionEmbeddings) } : c;
        if (model.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(model))
        {
            // A GGUF file is planned tensor by tensor: its blocks read in place, and the copies made at load.
            using Formats.GgufFile file = Formats.GgufFile.Open(model);
            (long attentionSide, long routed, long beside) = GgufCheckpoint.HeldBytes(file, options.Precision, nodes?.Count ?? 1);
            return MemoryPlan.Create(Shortened(GgufCheckpoint.ConfigOf(file, keepBlocks: options.Precision == null)), options, TensorDType.F32, nodes,
                imageBytes: beside, weightBytes: (attentionSide, routed));
        }
        bool synthetic = model.StartsWith(SyntheticModels.Prefix, StringComparison.Ordinal);
        (DeepSeekV3Config config, TensorDType stored) = synthetic
            ? (SyntheticModels.Get(model[SyntheticModels.Prefix.Length..]), TensorDType.BF16)
            : (DeepSeekV3Config.Load(model), MemoryPlan.StoredDType(model));
        config = Shortened(config);
        // A synthetic model is an image in memory, held beside whatever is copied from it.
        long image = synthetic
            ? MemoryPlan.ImageBytesBesideCopies(config, config.ConvertedPrecision ?? options.Precision ?? Precision.F32, TensorDType.BF16, nodes?.Count ?? 1)
            : 0;
        return MemoryPlan.Create(config, options, stored, nodes, imageBytes: image);
    }

    private static bool CarriesTokenizer(string model)
    {
        if (!model.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || !File.Exists(model))
            return false;
        using Formats.GgufFile file = Formats.GgufFile.Open(model);
        return GgufTokenizer.Has(file);
    }

    private static DeepSeekV3Model SyntheticModel(string name, ModelLoadOptions options)
    {
        DeepSeekV3Config config = SyntheticModels.Get(name);
        Checkpoint checkpoint = config.ConvertedPrecision != null
            ? ConvertedSyntheticCheckpoint.CreateInMemory(config, seed: 1)
            : SyntheticCheckpoint.CreateInMemory(config, seed: 1);
        return DeepSeekV3Model.FromCheckpoint(config, checkpoint, options);
    }

    /// <summary>The chat template conversations are rendered with and tool calls written in.</summary>
    public ChatFormat ChatFormat { get; }

    /// <summary>The prompt's token ids as the model will see them.</summary>
    public IReadOnlyList<int> EncodePrompt(GenerationRequest request)
    {
        request.Validate();
        if (request.PromptTokens != null)
            return request.PromptTokens;
        if (request.Messages != null)
            return Tokenizer.Encode(ChatFormat == ChatFormat.DeepSeekV31
                ? DeepSeekV31ChatTemplate.Render(request.Messages, addGenerationPrompt: true, Tokenizer.BosToken, request.Tools)
                : DeepSeekChatTemplate.Render(request.Messages, addGenerationPrompt: true, Tokenizer.BosToken, request.Tools));
        return [Tokenizer.BosTokenId, .. Tokenizer.Encode(request.Prompt!)];
    }

    /// <inheritdoc/>
    public IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
        GenerateAsync(request, logitsSink: null, cancellationToken);

    /// <summary>As the public overload; with <paramref name="logitsSink"/>, every sampled row of logits is copied there.</summary>
    internal async IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, List<float[]>? logitsSink, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        IReadOnlyList<int> prompt = EncodePrompt(request);
        int context = Config.MaxPositionEmbeddings;
        if (prompt.Count >= context)
            throw new ArgumentException($"The prompt has {prompt.Count} tokens; the model's context holds {context}, leaving no room to generate.", nameof(request));
        if (prompt.Count >= _maxTotalTokens)
            throw new ArgumentException($"The prompt has {prompt.Count} tokens; the KV cache holds {_maxTotalTokens} (MaxTotalTokens), leaving no room to generate.", nameof(request));
        foreach (int id in prompt)
            if ((uint)id >= (uint)Config.VocabSize)
                throw new ArgumentException($"Prompt token id {id} is outside the vocabulary (size {Config.VocabSize}).", nameof(request));
        foreach (int id in request.Sampling.LogitBias?.Keys ?? [])
            if (id >= Config.VocabSize)
                throw new ArgumentException($"logit_bias names token id {id}, outside the vocabulary (size {Config.VocabSize}).", nameof(SamplingOptions.LogitBias));
        TokenGrammar? grammar = _grammars.For(request);
        cancellationToken.ThrowIfCancellationRequested();

        var sequence = new Sequence(Interlocked.Increment(ref _nextId), prompt, request, Tokenizer, _eos, _maxLength,
            grammar != null ? new GrammarConstraint(grammar) : null, _grammars.Banned(request)) { LogitsSink = logitsSink };
        _engine.Submit(sequence);
        bool finished = false;
        try
        {
            using CancellationTokenRegistration registration = cancellationToken.Register(() => _engine.Cancel(sequence));
            ChannelReader<GenerationChunk> output = sequence.Output;
            while (await output.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (output.TryRead(out GenerationChunk? chunk))
                {
                    // Chunks already streamed are not delivered after cancellation.
                    cancellationToken.ThrowIfCancellationRequested();
                    finished = chunk.FinishReason != null;
                    yield return chunk;
                }
            }
        }
        finally
        {
            // Cancelled, failed, or the caller stopped reading early: the loop frees the pages before its next step.
            if (!finished)
                _engine.Cancel(sequence);
        }
    }

    /// <inheritdoc/>
    public SessionStatistics GetStatistics() => _engine.Statistics;

    /// <summary>Runs <paramref name="action"/> on the engine loop between steps (tests inspect the pool and cache).</summary>
    internal Task<T> InspectAsync<T>(Func<KvCachePool, PrefixCache?, T> action) => _engine.InvokeAsync(() => action(_pool, _prefixCache));

    /// <summary>Stops the engine (open streams end with <see cref="ObjectDisposedException"/>) and releases the cache and the model.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _engine.Dispose();
        _kv.Dispose();
        _model.Dispose();
    }
}
