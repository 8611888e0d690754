using System.Diagnostics;
using Ftransformers.Diagnostics;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>
/// Runs the levels one after another. Closed loop (the default): at level p, p workers send requests back to back
/// until the level's number is done, so that p requests are in flight at all times but the last few. Open loop
/// (<see cref="BenchWorkload.RequestRate"/>): requests are sent at Poisson arrival times whatever the replies, at most
/// p in flight (later ones wait for a slot). Each request's prompt and lengths depend only on the seed and its index.
/// </summary>
internal sealed class BenchRunner(IBenchTarget target, BenchWorkload workload, PromptFactory prompts, ProgressBar progress, bool profile = false,
    MachineBaseline? baseline = null, DatasetPrompts? dataset = null)
{
    public async Task<IReadOnlyList<LevelResult>> RunAsync(IReadOnlyList<(int Parallel, int Number)> levels, CancellationToken cancellationToken)
    {
        await WarmUpAsync(cancellationToken);

        var results = new List<LevelResult>();
        int offset = 0;
        foreach ((int parallel, int number) in levels)
        {
            results.Add(await RunLevelAsync(parallel, number, offset, cancellationToken));
            offset += number;
        }
        progress.Finish();
        return results;
    }

    /// <summary>Most tokens a warm-up request generates: enough to compile and touch every path.</summary>
    public const int WarmupTokens = 32;

    /// <summary>Sends the warm-up requests, which are not measured.</summary>
    /// <exception cref="InvalidOperationException">One failed.</exception>
    public async Task WarmUpAsync(CancellationToken cancellationToken)
    {
        // Warm-up prompts have no shared prefix and indexes of their own, so they do not pre-fill the cache for the levels.
        for (int i = 0; i < workload.Warmup; i++)
        {
            BenchPrompt prompt = Prompt(-1 - i, prefix: false);
            RequestResult warm = await target.SendAsync(prompt with { MaxTokens = Math.Min(prompt.MaxTokens ?? WarmupTokens, WarmupTokens) }, workload, cancellationToken);
            if (!warm.Succeeded)
                throw new InvalidOperationException($"The warm-up request failed: {warm.Error}");
        }
    }

    /// <summary>The prompt of request <paramref name="index"/>, with its output length.</summary>
    public BenchPrompt Prompt(int index, bool prefix = true)
    {
        if (dataset != null)
        {
            BenchPrompt line = dataset.Prompt(index);
            return line with { MaxTokens = line.MaxTokens ?? workload.Output.Of(workload.Seed, index, 2) };
        }
        return prompts.Prompt(index, workload.Input.Of(workload.Seed, index, 1), prefix ? workload.PrefixLength : 0) with { MaxTokens = workload.Output.Of(workload.Seed, index, 2) };
    }

    private async Task<LevelResult> RunLevelAsync(int parallel, int number, int firstIndex, CancellationToken cancellationToken)
    {
        var results = new RequestResult[number];
        target.Profile?.Reset();
        var clock = Stopwatch.StartNew();
        if (workload.RequestRate is { } rate)
        {
            double[] arrivals = ArrivalSchedule.Poisson(rate, number, workload.Seed + firstIndex);
            using var slots = new SemaphoreSlim(parallel);
            await Task.WhenAll(Enumerable.Range(0, number).Select(async i =>
            {
                TimeSpan wait = TimeSpan.FromSeconds(arrivals[i]) - clock.Elapsed;
                if (wait > TimeSpan.Zero)
                    await Task.Delay(wait, cancellationToken);
                await slots.WaitAsync(cancellationToken);
                try
                {
                    results[i] = await target.SendAsync(Prompt(firstIndex + i), workload, cancellationToken);
                }
                finally
                {
                    slots.Release();
                }
                progress.Advance(parallel, results[i].Succeeded);
            }));
        }
        else
        {
            int next = -1;
            async Task Worker()
            {
                // Bounded: each worker takes indexes until the level's count is used up.
                for (int i = Interlocked.Increment(ref next); i < number; i = Interlocked.Increment(ref next))
                {
                    results[i] = await target.SendAsync(Prompt(firstIndex + i), workload, cancellationToken);
                    progress.Advance(parallel, results[i].Succeeded);
                }
            }
            await Task.WhenAll(Enumerable.Range(0, Math.Min(parallel, number)).Select(_ => Task.Run(Worker, cancellationToken)));
        }
        ForwardProfileSnapshot? snapshot = target.Profile?.Snapshot();
        return LevelResult.From(parallel, results, clock.Elapsed.TotalSeconds) with
        {
            Decode = DecodeProfile.From(snapshot),
            Profile = profile && snapshot != null ? new ProfileReport(snapshot, baseline).Rows() : null,
            Snapshot = profile ? snapshot : null,
        };
    }
}

/// <summary>A one-line progress bar on stderr, redrawn in place as requests finish.</summary>
internal sealed class ProgressBar(TextWriter writer, int total)
{
    private const int Width = 30;
    private readonly Lock _lock = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _done, _failed;

    public void Advance(int parallel, bool succeeded)
    {
        lock (_lock)
        {
            _done++;
            if (!succeeded)
                _failed++;
            int filled = total == 0 ? Width : _done * Width / total;
            writer.Write($"\r[{new string('#', filled)}{new string('-', Width - filled)}] {_done}/{total} requests, parallel {parallel}, " +
                $"{_failed} failed, {_clock.Elapsed.TotalSeconds:F1} s ");
            writer.Flush();
        }
    }

    public void Finish()
    {
        lock (_lock)
            writer.WriteLine();
    }
}
