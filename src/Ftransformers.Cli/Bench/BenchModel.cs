using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>Which OpenAI-style API the bench drives: chat messages or a raw text prompt.</summary>
internal enum BenchApi { Chat, Completions }

/// <summary>One prompt: a prefix shared by every request of the run (may be empty) and a part of its own, or a dataset's messages.</summary>
internal sealed record BenchPrompt(string SharedPrefix, string Text)
{
    /// <summary>Tokens to generate; null: the workload's output length.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>A conversation from a dataset, sent instead of the prefix and text (chat API).</summary>
    public IReadOnlyList<Tokenization.ChatMessage>? Messages { get; init; }

    /// <summary>What the chat API sends: the dataset's conversation, or the prefix as the system prompt and the text as the user's.</summary>
    public IReadOnlyList<Tokenization.ChatMessage> ChatMessages() => Messages
        ?? (SharedPrefix.Length > 0 ? [Tokenization.ChatMessage.System(SharedPrefix), Tokenization.ChatMessage.User(Text)] : [Tokenization.ChatMessage.User(Text)]);
}

/// <summary>What one request measured. Times are seconds from the request's start.</summary>
internal sealed record RequestResult
{
    public bool Succeeded => Error == null;
    public string? Error { get; init; }
    public int PromptTokens { get; init; }
    public int CachedPromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    public double TimeToFirstToken { get; init; }
    public double Latency { get; init; }

    /// <summary>Gaps between consecutive token arrivals (a chunk of k tokens counts as k gaps of a k-th of its wait).</summary>
    public IReadOnlyList<double> InterTokenLatencies { get; init; } = [];

    /// <summary>Time per output token after the first; null with fewer than two tokens.</summary>
    public double? TimePerOutputToken => CompletionTokens > 1 ? (Latency - TimeToFirstToken) / (CompletionTokens - 1) : null;

    public static RequestResult Failed(string error, double latency) => new() { Error = error, Latency = latency };
}

/// <summary>The workload of a run, as given on the command line.</summary>
internal sealed record BenchWorkload(BenchApi Api, LengthRange Input, LengthRange Output, int PrefixLength, int Seed, int Warmup, bool IgnoreEos, double Temperature)
{
    /// <summary>Open loop: requests sent at this mean rate per second (Poisson arrivals), at most the level's parallel in flight; null: closed loop.</summary>
    public double? RequestRate { get; init; }

    /// <summary>A JSONL file of prompts used instead of generated ones.</summary>
    public string? Dataset { get; init; }

    /// <summary>Interference mode: the length of the long prompt that arrives while the level's streams decode.</summary>
    public int? Interference { get; init; }
}

/// <summary>Something the bench sends requests to: the in-process session, or an OpenAI-compatible server.</summary>
internal interface IBenchTarget : IAsyncDisposable
{
    /// <summary>"in-process" or the server's URL.</summary>
    string Description { get; }

    /// <summary>The model, as the user named it.</summary>
    string Model { get; }

    /// <summary>The precision preset, when known.</summary>
    string? Preset { get; }

    /// <summary>Counts the tokens of a piece of text, for sizing prompts; the count may be estimated.</summary>
    Task<Func<string, int>> TokenCounterAsync(CancellationToken cancellationToken);

    /// <summary>Times the model's decode steps by part (in-process only); null when the target cannot.</summary>
    ForwardProfile? Profile { get; }

    /// <summary>
    /// Sends one request, timing its stream; <paramref name="onTokens"/> hears each arrival and its token count.
    /// Failures are returned, not thrown (cancellation is thrown).
    /// </summary>
    Task<RequestResult> SendAsync(BenchPrompt prompt, BenchWorkload workload, CancellationToken cancellationToken, Action<int>? onTokens = null);
}
