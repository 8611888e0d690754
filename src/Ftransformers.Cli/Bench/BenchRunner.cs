using System.Diagnostics;
using Ftransformers.Diagnostics;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>
/// Runs the levels one after another: at level p, p workers send requests back to back until the level's number
/// of requests is done, so that p requests are in flight at all times but the last few.
/// </summary>
internal sealed class BenchRunner(IBenchTarget target, BenchWorkload workload, PromptFactory prompts, ProgressBar progress, bool profile = false, MachineBaseline? baseline = null)
{
    public async Task<IReadOnlyList<LevelResult>> RunAsync(IReadOnlyList<(int Parallel, int Number)> levels, CancellationToken cancellationToken)
    {
        // Warm-up prompts have no shared prefix and indexes of their own, so they do not pre-fill the cache for the levels.
        for (int i = 0; i < workload.Warmup; i++)
        {
            RequestResult warm = await target.SendAsync(prompts.Prompt(-1 - i, workload.InputLength, 0), workload, cancellationToken);
            if (!warm.Succeeded)
                throw new InvalidOperationException($"The warm-up request failed: {warm.Error}");
        }

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

    private async Task<LevelResult> RunLevelAsync(int parallel, int number, int firstIndex, CancellationToken cancellationToken)
    {
        var results = new RequestResult[number];
        int next = -1;
        target.Profile?.Reset();
        var clock = Stopwatch.StartNew();
        async Task Worker()
        {
            // Bounded: each worker takes indexes until the level's count is used up.
            for (int i = Interlocked.Increment(ref next); i < number; i = Interlocked.Increment(ref next))
            {
                BenchPrompt prompt = prompts.Prompt(firstIndex + i, workload.InputLength, workload.PrefixLength);
                results[i] = await target.SendAsync(prompt, workload, cancellationToken);
                progress.Advance(parallel, results[i].Succeeded);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, Math.Min(parallel, number)).Select(_ => Task.Run(Worker, cancellationToken)));
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
