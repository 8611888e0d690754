using System.Globalization;
using Ftransformers.Cli.Bench;
using Ftransformers.Hosting;
using Ftransformers.Memory;

namespace Ftransformers.Cli.Tune;

/// <summary>What <c>tune</c> optimizes.</summary>
internal enum TuneGoal
{
    /// <summary>Lowest time per output token with one request.</summary>
    Tpot,
    /// <summary>Highest output tokens per second with the given number of requests at once.</summary>
    Throughput,
    /// <summary>Highest throughput whose TTFT p99 stays within a bound.</summary>
    Ttft,
}

/// <summary>The settings a trial ran with: the knobs tune turns (null: the engine's default).</summary>
internal sealed record TuneSettings(int Threads, int? NumaNodes, KvCacheDType KvCacheDType, int ChunkedPrefillSize, int MaxRunningRequests)
{
    /// <summary>The same settings as <c>serve</c> flags.</summary>
    public string Flags => string.Create(CultureInfo.InvariantCulture,
        $"--cpuinfer {Threads}{(NumaNodes is { } n ? $" --numa-nodes {n}" : "")} --kv-cache-dtype {KvCacheDType.ToString().ToLowerInvariant()} --chunked-prefill-size {ChunkedPrefillSize} --max-running-requests {MaxRunningRequests}");

    public void ApplyTo(FtransformersOptions options)
    {
        options.CpuThreads = Threads;
        options.NumaNodes = NumaNodes;
        options.KvCacheDType = KvCacheDType;
        options.ChunkedPrefillSize = ChunkedPrefillSize;
        options.MaxRunningRequests = MaxRunningRequests;
    }
}

/// <summary>One measured trial: its settings, what it measured, and its score (higher is better; null: it failed or broke the bound).</summary>
internal sealed record TuneTrial(TuneSettings Settings, double? TpotSeconds, double OutputTokensPerSecond, double? TtftP99Seconds, double? Score, string? Error);

/// <summary>
/// Short measured trials over the engine's knobs, one knob at a time (coordinate descent, in the order the knobs
/// matter most): each knob tries its candidates with the others at the best found so far, until the trial budget is
/// spent. Every trial loads the model with its settings and runs one short bench level.
/// </summary>
internal sealed class Tuner(FtransformersOptions baseOptions, TuneGoal goal, int parallel, double? ttftBound, BenchWorkload workload, int requests, int budget, TextWriter log)
{
    public List<TuneTrial> Trials { get; } = [];

    /// <summary>The candidates of each knob, starting from the engine's defaults on this machine.</summary>
    public static IReadOnlyList<Func<TuneSettings, IEnumerable<TuneSettings>>> Knobs(int cores, int machineNodes, int parallel) =>
    [
        s => Halvings(cores).Select(t => s with { Threads = t, NumaNodes = s.NumaNodes is { } n && n > t ? t : s.NumaNodes }),
        s => machineNodes > 1 ? [s with { NumaNodes = null }, s with { NumaNodes = 1 }] : [],
        s => [s with { KvCacheDType = KvCacheDType.F32 }, s with { KvCacheDType = KvCacheDType.BF16 }],
        s => new[] { 256, 1024, 2048, 8192 }.Select(c => s with { ChunkedPrefillSize = c }),
        s => new[] { parallel, 2 * parallel, 32 }.Distinct().Select(m => s with { MaxRunningRequests = Math.Max(m, parallel) }),
    ];

    private static IEnumerable<int> Halvings(int cores)
    {
        for (int t = cores; t >= 1; t /= 2)
            yield return t;
    }

    public async Task<TuneTrial?> RunAsync(TuneSettings start, IReadOnlyList<Func<TuneSettings, IEnumerable<TuneSettings>>> knobs, CancellationToken ct)
    {
        TuneTrial? best = null;
        TuneSettings current = start;
        foreach (var knob in knobs)
        {
            foreach (TuneSettings candidate in knob(current).Distinct())
            {
                if (Trials.Count >= budget)
                    return best;
                TuneTrial trial = Trials.FirstOrDefault(t => t.Settings == candidate) ?? await MeasureAsync(candidate, ct);
                if (!Trials.Contains(trial))
                    Trials.Add(trial);
                if (trial.Score is { } score && (best?.Score is not { } top || score > top))
                    best = trial;
            }
            current = best?.Settings ?? current;
        }
        return best;
    }

    private async Task<TuneTrial> MeasureAsync(TuneSettings settings, CancellationToken ct)
    {
        var options = new FtransformersOptions();
        ServeCommand.Copy(baseOptions, options);
        settings.ApplyTo(options);
        await log.WriteLineAsync($"trial {Trials.Count + 1}/{budget}: {settings.Flags}");
        IReadOnlyList<string> problems = options.Validate();
        if (problems.Count > 0)
            return new TuneTrial(settings, null, 0, null, null, string.Join(" ", problems));
        try
        {
            await using var target = new InProcessTarget(options);
            var prompts = new PromptFactory(await target.TokenCounterAsync(ct), workload.Seed);
            var runner = new BenchRunner(target, workload, prompts, new ProgressBar(TextWriter.Null, requests));
            LevelResult level = (await runner.RunAsync([(parallel, requests)], ct))[0];
            if (level.Failed > 0)
                return new TuneTrial(settings, null, 0, null, null, level.Errors.FirstOrDefault());
            double? tpot = level.TimePerOutputToken?.Mean, ttft = level.TimeToFirstToken?.P99;
            double? score = goal switch
            {
                TuneGoal.Tpot => tpot is { } t && t > 0 ? 1 / t : null,
                TuneGoal.Throughput => level.OutputTokensPerSecond,
                _ => ttft <= ttftBound ? level.OutputTokensPerSecond : null,
            };
            return new TuneTrial(settings, tpot, level.OutputTokensPerSecond, ttft, score, score == null && goal == TuneGoal.Ttft ? "TTFT p99 above the bound" : null);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or Microsoft.Extensions.Options.OptionsValidationException)
        {
            return new TuneTrial(settings, null, 0, null, null, e.Message);
        }
    }
}
