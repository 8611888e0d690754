namespace Ftransformers.Generation;

/// <summary>Why generation ended.</summary>
public enum FinishReason
{
    /// <summary>The model emitted end-of-sentence, or a stop string was reached.</summary>
    Stop,
    /// <summary>max_tokens, the model's context, or the KV cache's capacity (MaxTotalTokens) was reached.</summary>
    Length,
    /// <summary>The model ended its turn after calling tools.</summary>
    ToolCalls,
}

/// <summary>Token counts and timings of a finished request.</summary>
/// <param name="PromptTokens">Tokens of the input.</param>
/// <param name="CompletionTokens">Tokens generated (the end-of-sentence token included).</param>
public sealed record GenerationUsage(int PromptTokens, int CompletionTokens)
{
    /// <summary>Input plus generated tokens.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;

    /// <summary>Prompt tokens whose KV came from the prefix cache instead of being computed.</summary>
    public int CachedPromptTokens { get; init; }

    /// <summary>Time from submission until the request started running.</summary>
    public TimeSpan QueueTime { get; init; }

    /// <summary>Time from submission until the first generated token.</summary>
    public TimeSpan TimeToFirstToken { get; init; }

    /// <summary>Generated tokens after the first, per second of decoding.</summary>
    public double DecodeTokensPerSecond { get; init; }
}

/// <summary>
/// One piece of a streamed generation: the text it adds and the tokens behind it. The last chunk carries the
/// finish reason and the usage (its text may be empty).
/// </summary>
/// <param name="Text">Newly completed text (never half a character, never part of a stop string).</param>
/// <param name="TokenIds">Tokens generated since the previous chunk.</param>
public sealed record GenerationChunk(string Text, IReadOnlyList<int> TokenIds)
{
    /// <summary>Set on the last chunk.</summary>
    public FinishReason? FinishReason { get; init; }

    /// <summary>Tool calls completed in this chunk (empty when none); a call cut by the end of output comes with the arguments it has.</summary>
    public IReadOnlyList<GeneratedToolCall> ToolCalls { get; init; } = [];

    /// <summary>Pieces of tool calls generated in this chunk, for streaming them as they are written (empty when none).</summary>
    public IReadOnlyList<ToolCallDelta> ToolCallDeltas { get; init; } = [];

    /// <summary>The log-probability of each token in <see cref="TokenIds"/>, when the request asked for them.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }

    /// <summary>Set on the last chunk.</summary>
    public GenerationUsage? Usage { get; init; }

    /// <summary>Tokens of the input, on every chunk (for usage reported while streaming).</summary>
    public int PromptTokens { get; init; }
}
