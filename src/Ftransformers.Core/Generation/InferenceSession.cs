using System.Runtime.CompilerServices;
using Ftransformers.Model;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation;

/// <summary>
/// Runs requests on one model, one at a time: encode, prefill, then sample token by token with the KV cache,
/// streaming text as it completes.
/// </summary>
public sealed class InferenceSession : IInferenceSession
{
    private readonly DeepSeekV3Model _model;
    private readonly SemaphoreSlim _oneAtATime = new(1, 1);
    private readonly HashSet<int> _eos;
    private int _requests;
    private SequenceKvCache? _running;

    /// <inheritdoc/>
    public DeepSeekV3Config Config => _model.Config;

    /// <inheritdoc/>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>Creates a session over a model (owned: disposed with the session) and a tokenizer.</summary>
    /// <exception cref="ArgumentException">The tokenizer produces ids the model's vocabulary lacks.</exception>
    public InferenceSession(DeepSeekV3Model model, ITextTokenizer tokenizer)
    {
        if (tokenizer.VocabSize > model.Config.VocabSize)
            throw new ArgumentException($"The tokenizer's vocabulary ({tokenizer.VocabSize} ids) exceeds the model's ({model.Config.VocabSize}).", nameof(tokenizer));
        _model = model;
        Tokenizer = tokenizer;
        _eos = [.. model.Config.EosTokenIds, tokenizer.EosTokenId];
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
        options.Validate();
        string model = options.Model;
        string? tokenizerDirectory = options.Tokenizer;
        DeepSeekV3Model loaded = model.StartsWith(SyntheticModels.Prefix, StringComparison.Ordinal)
            ? SyntheticModel(model[SyntheticModels.Prefix.Length..], options.ToModelLoadOptions())
            : DeepSeekV3Model.Load(model, options.ToModelLoadOptions());
        try
        {
            string? dir = tokenizerDirectory ?? (File.Exists(Path.Combine(model, "tokenizer.json")) ? model : null);
            ITextTokenizer tokenizer = dir != null ? DeepSeekTokenizer.Load(dir) : ByteTokenizer.Instance;
            return new InferenceSession(loaded, tokenizer);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    private static DeepSeekV3Model SyntheticModel(string name, ModelLoadOptions options)
    {
        DeepSeekV3Config config = SyntheticModels.Get(name);
        return DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 1), options);
    }

    /// <summary>The prompt's token ids as the model will see them.</summary>
    public IReadOnlyList<int> EncodePrompt(GenerationRequest request)
    {
        request.Validate();
        if (request.PromptTokens != null)
            return request.PromptTokens;
        if (request.Messages != null)
            return Tokenizer.Encode(DeepSeekChatTemplate.Render(request.Messages, addGenerationPrompt: true, Tokenizer.BosToken));
        return [Tokenizer.BosTokenId, .. Tokenizer.Encode(request.Prompt!)];
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        IReadOnlyList<int> prompt = EncodePrompt(request);
        int context = Config.MaxPositionEmbeddings;
        if (prompt.Count >= context)
            throw new ArgumentException($"The prompt has {prompt.Count} tokens; the model's context holds {context}, leaving no room to generate.", nameof(request));
        foreach (int id in prompt)
            if ((uint)id >= (uint)Config.VocabSize)
                throw new ArgumentException($"Prompt token id {id} is outside the vocabulary (size {Config.VocabSize}).", nameof(request));

        var sampler = new Sampler(request.Sampling);
        IncrementalDecoder decoder = Tokenizer.CreateIncrementalDecoder();
        var stops = new StopSequenceMatcher(request.Stop);
        var cache = new SequenceKvCache(Config);
        int[] promptArray = [.. prompt];

        Interlocked.Increment(ref _requests);
        await _oneAtATime.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _running = cache;
            float[] logits = await Task.Run(() => _model.Forward(promptArray, cache, cancellationToken: cancellationToken), cancellationToken);
            for (int generated = 1; ; generated++)
            {
                int token = sampler.Next(logits);
                bool eos = !request.IgnoreEos && _eos.Contains(token);
                (string text, bool stopped) = eos ? (stops.Flush() + decoder.Flush(), false) : stops.Append(decoder.Append(token));
                FinishReason? finish = eos || stopped ? FinishReason.Stop
                    : generated >= request.MaxTokens || cache.Length >= context ? FinishReason.Length
                    : null;
                if (finish == FinishReason.Length)
                    text += stops.Append(decoder.Flush()).Emit + stops.Flush();
                yield return new GenerationChunk(text, [token])
                {
                    FinishReason = finish,
                    Usage = finish != null ? new GenerationUsage(prompt.Count, generated) : null,
                };
                if (finish != null)
                    yield break;
                logits = await Task.Run(() => _model.Forward([token], cache, cancellationToken: cancellationToken), cancellationToken);
            }
        }
        finally
        {
            _running = null;
            _oneAtATime.Release();
            Interlocked.Decrement(ref _requests);
        }
    }

    /// <inheritdoc/>
    public SessionStatistics GetStatistics()
    {
        // One request runs at a time; the others wait on the gate.
        int requests = Volatile.Read(ref _requests);
        return new SessionStatistics(Math.Min(requests, 1), Math.Max(requests - 1, 0), _running?.Length ?? 0, 0);
    }

    /// <summary>Releases the model.</summary>
    public void Dispose()
    {
        _model.Dispose();
        _oneAtATime.Dispose();
    }
}
