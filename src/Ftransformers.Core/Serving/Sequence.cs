using System.Diagnostics;
using System.Threading.Channels;
using Ftransformers.Generation;
using Ftransformers.Generation.Grammar;
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
    private readonly TokenPenalties? _penalties;
    private readonly GrammarConstraint? _constraint;
    private readonly IReadOnlyList<int> _banned;
    private readonly ToolCallParser? _toolCalls;
    private float[] _adjusted = [];
    private readonly Channel<GenerationChunk> _output = Channel.CreateUnbounded<GenerationChunk>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <summary>Creates a waiting sequence; <paramref name="maxLength"/> is the most tokens its KV may hold.</summary>
    /// <param name="id">Submission order.</param>
    /// <param name="prompt">The prompt's tokens.</param>
    /// <param name="request">The request.</param>
    /// <param name="tokenizer">Decodes the output.</param>
    /// <param name="eos">Tokens that end generation.</param>
    /// <param name="maxLength">Most tokens the sequence's KV may hold.</param>
    /// <param name="constraint">The grammar the output must follow, if any.</param>
    /// <param name="banned">Tokens never sampled (the tool-call opener under tool_choice none).</param>
    public Sequence(long id, IReadOnlyList<int> prompt, GenerationRequest request, ITextTokenizer tokenizer, IReadOnlySet<int> eos, int maxLength,
        GrammarConstraint? constraint = null, IReadOnlyList<int>? banned = null)
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
        _penalties = request.Sampling.AdjustsLogits ? new TokenPenalties(request.Sampling, prompt) : null;
        _constraint = constraint;
        _banned = banned ?? [];
        _toolCalls = request.Tools is { Count: > 0 } ? new ToolCallParser() : null;
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
    /// Samples the next token from its logits (after penalties, bias and the grammar's mask), appends it and streams
    /// its chunk.
    /// </summary>
    /// <returns>Whether the sequence has finished.</returns>
    public bool Accept(ReadOnlySpan<float> logits)
    {
        LogitsSink?.Add(logits.ToArray());
        int token = _sampler.Next(Adjust(logits));
        TokenLogprob? logprob = Request.Logprobs ? LogprobOf(logits, token, Request.TopLogprobs) : null;
        _penalties?.Add(token);
        _constraint?.Accept(token);
        Tokens.Add(token);
        LastTokenAt = Stopwatch.GetTimestamp();
        FirstTokenAt ??= LastTokenAt;

        bool eos = !Request.IgnoreEos && _eos.Contains(token);
        bool length = !eos && (Generated >= Request.MaxTokens || ComputedTokens >= MaxLength);
        // The new token is fed at position ComputedTokens; there must be room for it.
        (string text, IReadOnlyList<GeneratedToolCall> calls, IReadOnlyList<ToolCallDelta> deltas, bool stopped) = Emit(eos ? "" : _decoder.Append(token), final: eos || length);
        FinishReason? finish = stopped || eos ? (_toolCalls?.CallCount > 0 && !stopped ? FinishReason.ToolCalls : FinishReason.Stop)
            : length ? FinishReason.Length
            : null;
        _output.Writer.TryWrite(new GenerationChunk(text, [token])
        {
            FinishReason = finish,
            Usage = finish != null ? Usage() : null,
            ToolCalls = calls,
            ToolCallDeltas = deltas,
            Logprobs = logprob != null ? [logprob] : null,
            PromptTokens = PromptLength,
        });
        if (finish != null)
            _output.Writer.TryComplete();
        return finish != null;
    }

    // Decoded text -> tool calls split off -> stop strings; at the end, whatever each stage holds back comes out.
    private (string Text, IReadOnlyList<GeneratedToolCall> Calls, IReadOnlyList<ToolCallDelta> Deltas, bool Stopped) Emit(string decoded, bool final)
    {
        if (final)
            decoded += _decoder.Flush();
        IReadOnlyList<GeneratedToolCall> calls = [];
        IReadOnlyList<ToolCallDelta> deltas = [];
        if (_toolCalls != null)
        {
            (decoded, calls, deltas) = _toolCalls.AppendWithDeltas(decoded);
            if (final)
            {
                (string rest, IReadOnlyList<GeneratedToolCall> cut) = _toolCalls.Flush();
                decoded += rest;
                calls = [.. calls, .. cut];
            }
        }
        (string text, bool stopped) = _stops.Append(decoded);
        if (final && !stopped)
            text += _stops.Flush();
        return (text, calls, deltas, stopped);
    }

    // The logits the sampler sees: the model's, or a copy with penalties, bias, banned tokens and the grammar's mask.
    private ReadOnlySpan<float> Adjust(ReadOnlySpan<float> logits)
    {
        if (_penalties == null && _constraint == null && _banned.Count == 0)
            return logits;
        if (_adjusted.Length != logits.Length)
            _adjusted = new float[logits.Length];
        logits.CopyTo(_adjusted);
        _penalties?.Apply(_adjusted);
        foreach (int token in _banned)
            _adjusted[token] = float.NegativeInfinity;
        _constraint?.Mask().Apply(_adjusted);
        return _adjusted;
    }

    private static TokenLogprob LogprobOf(ReadOnlySpan<float> logits, int token, int top)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float logit in logits)
            sum += Math.Exp(logit - max);
        float logSum = max + (float)Math.Log(sum);
        var best = new List<TokenLogprob>(top + 1);
        for (int i = 0; i < logits.Length && top > 0; i++)
        {
            if (best.Count == top && logits[i] - logSum <= best[^1].Logprob)
                continue;
            var entry = new TokenLogprob(i, logits[i] - logSum, []);
            int at = best.FindIndex(b => b.Logprob < entry.Logprob);
            best.Insert(at < 0 ? best.Count : at, entry);
            if (best.Count > top)
                best.RemoveAt(top);
        }
        return new TokenLogprob(token, logits[token] - logSum, best);
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
