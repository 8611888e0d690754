using System.Diagnostics;

namespace Ftransformers.Cli.Bench;

/// <summary>What the streams' inter-token latency did while a long prompt was prefilled, against before it arrived.</summary>
/// <param name="Streams">Requests decoding throughout.</param>
/// <param name="LongPromptTokens">Prompt tokens of the long request (as the target counted them).</param>
/// <param name="LongPromptTtft">The long request's time to first token, seconds.</param>
/// <param name="Before">The streams' gaps between tokens before the long prompt arrived (after warm-up).</param>
/// <param name="During">Their gaps from its arrival until its first token (and each stream's first token after that).</param>
internal sealed record InterferenceResult(int Streams, int LongPromptTokens, double LongPromptTtft, Distribution? Before, Distribution? During)
{
    /// <summary>p99 during over p99 before.</summary>
    public double? P99Ratio => Before is { P99: > 0 } b && During is { } d ? d.P99 / b.P99 : null;
}

/// <summary>
/// The long-prompt interference mode: at level p, p streams decode; once each has given <see cref="WarmTokens"/>
/// tokens, their gaps are recorded until each has given <see cref="BaselineTokens"/> more; then one prompt of the
/// requested length arrives, and their gaps are recorded until its first token. Chunked prefill is for this: the
/// streams should keep decoding while the prompt is prefilled. Every gap is counted per token.
/// </summary>
internal sealed class InterferenceRunner(IBenchTarget target, BenchWorkload workload, PromptFactory prompts)
{
    public const int WarmTokens = 4, BaselineTokens = 16;

    private sealed class Stream
    {
        public readonly List<(long Time, int Tokens)> Arrivals = [];
        public int Count;
    }

    public async Task<LevelResult> RunLevelAsync(int parallel, int longPrompt, int firstIndex, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var streams = Enumerable.Range(0, parallel).Select(_ => new Stream()).ToArray();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int needed = 0;
        void OnTokens(Stream s, int tokens)
        {
            lock (s)
            {
                s.Arrivals.Add((Stopwatch.GetTimestamp(), tokens));
                s.Count += tokens;
            }
            if (streams.All(x => Volatile.Read(ref x.Count) >= Volatile.Read(ref needed)))
                progress.TrySetResult();
        }
        async Task<RequestResult?> Run(Stream s, int index)
        {
            try
            {
                BenchPrompt prompt = prompts.Prompt(index, workload.Input.Of(workload.Seed, index, 1), workload.PrefixLength) with { MaxTokens = workload.Output.Max };
                return await target.SendAsync(prompt, workload, stop.Token, tokens => OnTokens(s, tokens));
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return null; // stopped once the long prompt answered
            }
        }

        Volatile.Write(ref needed, WarmTokens);
        Task<RequestResult?>[] running = [.. streams.Select((s, i) => Run(s, firstIndex + i))];
        async Task WaitForTokens(int count)
        {
            progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref needed, count);
            if (streams.All(x => Volatile.Read(ref x.Count) >= count))
                return;
            Task ended = await Task.WhenAny(progress.Task, Task.WhenAny(running));
            if (ended != progress.Task)
                throw new InvalidOperationException($"A stream ended before the interference measurement finished (error: {running.First(t => t.IsCompleted).Result?.Error ?? "none"}); raise --output-length.");
        }
        await WaitForTokens(WarmTokens);
        long beforeStart = Stopwatch.GetTimestamp();
        await WaitForTokens(WarmTokens + BaselineTokens);
        long arrival = Stopwatch.GetTimestamp();

        int longIndex = firstIndex + parallel;
        BenchPrompt longRequest = prompts.Prompt(longIndex, longPrompt, 0) with { MaxTokens = 1 };
        RequestResult answered = await target.SendAsync(longRequest, workload, cancellationToken);
        long firstToken = arrival + (long)(answered.TimeToFirstToken * Stopwatch.Frequency);
        if (!answered.Succeeded)
        {
            await stop.CancelAsync();
            await Task.WhenAll(running);
            return LevelResult.From(parallel, [answered], clock.Elapsed.TotalSeconds);
        }
        // Each stream's next token after the prompt's first one was held up by the same steps.
        await WaitForTokens(streams.Max(s => Volatile.Read(ref s.Count)) + 1);
        await stop.CancelAsync();
        await Task.WhenAll(running);

        var before = new List<double>();
        var during = new List<double>();
        foreach (Stream s in streams)
        {
            (long Time, int Tokens)[] arrivals;
            lock (s)
                arrivals = [.. s.Arrivals];
            bool afterFirst = false;
            for (int i = 1; i < arrivals.Length; i++)
            {
                (long time, int tokens) = arrivals[i];
                double gap = Stopwatch.GetElapsedTime(arrivals[i - 1].Time, time).TotalSeconds / tokens;
                if (time > beforeStart && time <= arrival)
                    before.AddRange(Enumerable.Repeat(gap, tokens));
                else if (time > arrival && (time <= firstToken || !afterFirst))
                {
                    during.AddRange(Enumerable.Repeat(gap, tokens));
                    afterFirst |= time > firstToken;
                }
            }
        }
        return LevelResult.From(parallel, [answered], clock.Elapsed.TotalSeconds) with
        {
            Interference = new InterferenceResult(parallel, answered.PromptTokens, answered.TimeToFirstToken, Distribution.Of(before), Distribution.Of(during)),
        };
    }
}
