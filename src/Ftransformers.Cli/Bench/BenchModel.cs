using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>Which OpenAI-style API the bench drives: chat messages or a raw text prompt.</summary>
internal enum BenchApi { Chat, Completions }

/// <summary>One prompt: a prefix shared by every request of the run (may be empty) and a part of its own.</summary>
internal sealed record BenchPrompt(string SharedPrefix, string Text);

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
internal sealed record BenchWorkload(BenchApi Api, int InputLength, int OutputLength, int PrefixLength, int Seed, int Warmup, bool IgnoreEos, double Temperature);

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

    /// <summary>Sends one request, timing its stream; failures are returned, not thrown (cancellation is thrown).</summary>
    Task<RequestResult> SendAsync(BenchPrompt prompt, BenchWorkload workload, CancellationToken cancellationToken);
}
