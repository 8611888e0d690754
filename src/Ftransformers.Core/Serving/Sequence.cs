using System.Diagnostics;
using System.Threading.Channels;
using Ftransformers.Generation;
using Ftransformers.Memory;
using Ftransformers.Tokenization;

namespace Ftransformers.Serving;

/// <summary>Where a sequence is in its life.</summary>
internal enum SequenceStatus
{
    /// <summary>Queued: not yet admitted, or preempted and waiting to be recomputed.</summary>
    Waiting,
    /// <summary>Admitted: holds KV pages; prefilling or decoding.</summary>
    Running,
    /// <summary>Done, cancelled or failed; holds nothing.</summary>
    Finished,
}

/// <summary>
/// One request inside the engine: its tokens (prompt, then generated), the KV pages that hold the computed ones,
/// its sampling and text state, its output stream and timings. Touched only by the engine loop thread, except
/// <see cref="Output"/>'s reader.
/// </summary>
internal sealed class Sequence
{
    private readonly Sampler _sampler;
    private readonly IncrementalDecoder _decoder;
    private readonly StopSequenceMatcher _stops;
    private readonly IReadOnlySet<int> _eos;
    private readonly Channel<GenerationChunk> _output = Channel.CreateUnbounded<GenerationChunk>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <summary>Creates a waiting sequence; <paramref name="maxLength"/> is the most tokens its KV may hold.</summary>
    public Sequence(long id, IReadOnlyList<int> prompt, GenerationRequest request, ITextTokenizer tokenizer, IReadOnlySet<int> eos, int maxLength)
    {
        Id = id;
        Request = request;
        Tokens = [.. prompt];
        PromptLength = prompt.Count;
        MaxLength = maxLength;
        _eos = eos;
        _sampler = new Sampler(request.Sampling);
        _decoder = tokenizer.CreateIncrementalDecoder();
        _stops = new StopSequenceMatcher(request.Stop);
        SubmittedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>Submission order (for messages and tie-breaks).</summary>
    public long Id { get; }

    /// <summary>The request as given.</summary>
    public GenerationRequest Request { get; }

    /// <summary>Prompt tokens followed by generated ones.</summary>
    public List<int> Tokens { get; }

    /// <summary>Tokens of the prompt.</summary>
    public int PromptLength { get; }

    /// <summary>Tokens generated so far.</summary>
    public int Generated => Tokens.Count - PromptLength;

    /// <summary>Most tokens the sequence's KV may hold (the model's context or the pool, whichever is smaller).</summary>
    public int MaxLength { get; }

    /// <summary>Leading tokens whose KV is in <see cref="PageTable"/>.</summary>
    public int ComputedTokens { get; set; }

    /// <summary>Tokens still to run through the model: the unprefilled prompt, or the last sampled token.</summary>
    public int Remaining => Tokens.Count - ComputedTokens;

    /// <summary>KV pages of logical pages 0, 1, ... (one reference each held by this sequence).</summary>
    public List<int> PageTable { get; } = [];

    /// <summary>The prefix-cache node locked for the reused prefix, if any.</summary>
    public PrefixCacheNode? LockedNode { get; set; }

    /// <summary>Where the sequence is.</summary>
    public SequenceStatus Status { get; set; }

    /// <summary>Prompt tokens reused from the prefix cache at first admission.</summary>
    public int CachedPromptTokens { get; set; }

    /// <summary>Stopwatch timestamps of submission, first admission, first and latest generated token.</summary>
    public long SubmittedAt { get; }

    /// <inheritdoc cref="SubmittedAt"/>
    public long? AdmittedAt { get; set; }

    /// <inheritdoc cref="SubmittedAt"/>
    public long? FirstTokenAt { get; private set; }

    /// <inheritdoc cref="SubmittedAt"/>
    public long LastTokenAt { get; private set; }

    /// <summary>When set, each sampled row of logits is copied here (tests compare them with solo runs).</summary>
    public List<float[]>? LogitsSink { get; init; }

    /// <summary>The chunks streamed to the caller.</summary>
    public ChannelReader<GenerationChunk> Output => _output.Reader;

    /// <summary>
    /// Samples the next token from its logits, appends it and streams its chunk.
    /// </summary>
    /// <returns>Whether the sequence has finished.</returns>
    public bool Accept(ReadOnlySpan<float> logits)
    {
        LogitsSink?.Add(logits.ToArray());
        int token = _sampler.Next(logits);
        Tokens.Add(token);
        LastTokenAt = Stopwatch.GetTimestamp();
        FirstTokenAt ??= LastTokenAt;

        bool eos = !Request.IgnoreEos && _eos.Contains(token);
        (string text, bool stopped) = eos ? (_stops.Flush() + _decoder.Flush(), false) : _stops.Append(_decoder.Append(token));
        // The new token is fed at position ComputedTokens; there must be room for it.
        FinishReason? finish = eos || stopped ? FinishReason.Stop
            : Generated >= Request.MaxTokens || ComputedTokens >= MaxLength ? FinishReason.Length
            : null;
        if (finish == FinishReason.Length)
            text += _stops.Append(_decoder.Flush()).Emit + _stops.Flush();
        _output.Writer.TryWrite(new GenerationChunk(text, [token]) { FinishReason = finish, Usage = finish != null ? Usage() : null });
        if (finish != null)
            _output.Writer.TryComplete();
        return finish != null;
    }

    /// <summary>Ends the stream with an error (cancellation, failure, shutdown).</summary>
    public void Fail(Exception error) => _output.Writer.TryComplete(error);

    private GenerationUsage Usage()
    {
        double decodeSeconds = Stopwatch.GetElapsedTime(FirstTokenAt!.Value, LastTokenAt).TotalSeconds;
        return new GenerationUsage(PromptLength, Generated)
        {
            CachedPromptTokens = CachedPromptTokens,
            QueueTime = Stopwatch.GetElapsedTime(SubmittedAt, AdmittedAt ?? SubmittedAt),
            TimeToFirstToken = Stopwatch.GetElapsedTime(SubmittedAt, FirstTokenAt!.Value),
            DecodeTokensPerSecond = Generated > 1 && decodeSeconds > 0 ? (Generated - 1) / decodeSeconds : 0,
        };
    }
}
