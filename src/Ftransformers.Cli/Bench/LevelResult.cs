using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>Mean and percentiles of one measure, in seconds (null when nothing was measured).</summary>
internal sealed record Distribution(double Mean, double P50, double P90, double P99)
{
    /// <summary>Percentiles by linear interpolation between the closest ranks (numpy's default).</summary>
    public static Distribution? Of(IEnumerable<double> values)
    {
        double[] sorted = [.. values.Order()];
        if (sorted.Length == 0)
            return null;
        double At(double q)
        {
            double rank = q * (sorted.Length - 1);
            int low = (int)Math.Floor(rank);
            int high = Math.Min(low + 1, sorted.Length - 1);
            return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
        }
        return new Distribution(sorted.Average(), At(0.5), At(0.9), At(0.99));
    }
}

/// <summary>The outcome of one concurrency level.</summary>
internal sealed record LevelResult
{
    public required int Parallel { get; init; }
    public required int Number { get; init; }
    public required int Succeeded { get; init; }
    public required int Failed { get; init; }
    public required double DurationSeconds { get; init; }
    public required double RequestThroughput { get; init; }
    public required double OutputTokensPerSecond { get; init; }
    public required double TotalTokensPerSecond { get; init; }
    public required double AverageInputTokens { get; init; }
    public required double AverageOutputTokens { get; init; }
    public required double CacheHitRate { get; init; }
    public Distribution? TimeToFirstToken { get; init; }
    public Distribution? TimePerOutputToken { get; init; }
    public Distribution? InterTokenLatency { get; init; }
    public Distribution? Latency { get; init; }
    public IReadOnlyList<string> Errors { get; init; } = [];
    /// <summary>The model's decode steps by part, when the target is in-process.</summary>
    public DecodeProfile? Decode { get; init; }

    /// <summary>The streams' gaps before and during a long prompt's prefill (<c>--interference</c>); null otherwise.</summary>
    public InterferenceResult? Interference { get; init; }

    /// <summary>Every step's parts against the machine (<c>--profile</c>); null otherwise.</summary>
    public IReadOnlyList<Ftransformers.Diagnostics.ProfileRow>? Profile { get; init; }

    /// <summary>What <see cref="Profile"/> was made from, for the report's flame graph (not written to JSON).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public ForwardProfileSnapshot? Snapshot { get; init; }

    public static LevelResult From(int parallel, IReadOnlyList<RequestResult> results, double durationSeconds)
    {
        RequestResult[] ok = [.. results.Where(r => r.Succeeded)];
        long prompt = ok.Sum(r => (long)r.PromptTokens), completion = ok.Sum(r => (long)r.CompletionTokens), cached = ok.Sum(r => (long)r.CachedPromptTokens);
        double seconds = Math.Max(durationSeconds, 1e-9);
        return new LevelResult
        {
            Parallel = parallel,
            Number = results.Count,
            Succeeded = ok.Length,
            Failed = results.Count - ok.Length,
            DurationSeconds = durationSeconds,
            RequestThroughput = ok.Length / seconds,
            OutputTokensPerSecond = completion / seconds,
            TotalTokensPerSecond = (prompt + completion) / seconds,
            AverageInputTokens = ok.Length > 0 ? (double)prompt / ok.Length : 0,
            AverageOutputTokens = ok.Length > 0 ? (double)completion / ok.Length : 0,
            CacheHitRate = prompt > 0 ? (double)cached / prompt : 0,
            TimeToFirstToken = Distribution.Of(ok.Select(r => r.TimeToFirstToken)),
            TimePerOutputToken = Distribution.Of(ok.Where(r => r.TimePerOutputToken != null).Select(r => r.TimePerOutputToken!.Value)),
            InterTokenLatency = Distribution.Of(ok.SelectMany(r => r.InterTokenLatencies)),
            Latency = Distribution.Of(ok.Select(r => r.Latency)),
            Errors = [.. results.Where(r => !r.Succeeded).Select(r => r.Error!).Distinct().Take(5)],
        };
    }
}

/// <summary>
/// A level's decode steps (every running request decoding one token) by part, in seconds, and the step time projected
/// to DeepSeek-V3's depth (3 dense + 58 MoE layers) from the per-layer times.
/// </summary>
internal sealed record DecodeProfile(long Steps, double MeanBatch, int DenseLayers, int MoeLayers, double StepSeconds,
    double HeadSeconds, double AttentionSecondsPerLayer, double DenseMlpSecondsPerLayer, double MoeSecondsPerLayer, double? ProjectedStepSeconds)
{
    public static DecodeProfile? From(ForwardProfileSnapshot? s) => s is not { Steps: > 0 } ? null : new DecodeProfile(
        s.Steps, s.MeanBatch, s.DenseLayers, s.MoeLayers, s.StepTime.TotalSeconds, s.HeadPerStep.TotalSeconds, s.AttentionPerLayer.TotalSeconds,
        s.DenseMlpPerLayer.TotalSeconds, s.MoePerLayer.TotalSeconds, s.ProjectStep()?.TotalSeconds);

    /// <summary>Whether the model is shallower than DeepSeek-V3, so that the projection says something.</summary>
    public bool IsShallow => DenseLayers + MoeLayers < ForwardProfileSnapshot.DeepSeekV3DenseLayers + ForwardProfileSnapshot.DeepSeekV3MoeLayers;
}
