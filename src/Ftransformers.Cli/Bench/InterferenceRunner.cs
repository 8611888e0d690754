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
        // Released on every arrival; waiters look at the counts again.
        using var arrived = new SemaphoreSlim(0);
        async Task<RequestResult?> Run(Stream s, int index)
        {
            try
            {
                BenchPrompt prompt = prompts.Prompt(index, workload.Input.Of(workload.Seed, index, 1), workload.PrefixLength) with { MaxTokens = workload.Output.Max };
                return await target.SendAsync(prompt, workload, stop.Token, tokens =>
                {
                    lock (s)
                    {
                        s.Arrivals.Add((Stopwatch.GetTimestamp(), tokens));
                        s.Count += tokens;
                    }
                    arrived.Release();
                });
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return null; // stopped once the long prompt answered
            }
        }
        int CountOf(Stream s)
        {
            lock (s)
                return s.Count;
        }

        Task<RequestResult?>[] running = [.. streams.Select((s, i) => Run(s, firstIndex + i))];
        try
        {
            // Until every stream has reached its own count; a stream that ends first ends the measurement.
            async Task WaitFor(int[] counts)
            {
                while (!streams.Select(CountOf).Zip(counts).All(p => p.First >= p.Second))
                {
                    Task ended = await Task.WhenAny(arrived.WaitAsync(stop.Token), Task.WhenAny(running));
                    if (running.FirstOrDefault(t => t.IsCompleted) is { } done)
                        throw new InvalidOperationException($"A stream ended before the interference measurement finished ({(await done)?.Error ?? "its tokens ran out"}); raise --output-length.");
                    await ended;
                }
            }
            await WaitFor([.. streams.Select(_ => WarmTokens)]);
            long beforeStart = Stopwatch.GetTimestamp();
            await WaitFor([.. streams.Select(_ => WarmTokens + BaselineTokens)]);
            long arrival = Stopwatch.GetTimestamp();

            BenchPrompt longRequest = prompts.Prompt(firstIndex + parallel, longPrompt, 0) with { MaxTokens = 1 };
            RequestResult answered = await target.SendAsync(longRequest, workload, cancellationToken);
            if (!answered.Succeeded)
                return LevelResult.From(parallel, [answered], clock.Elapsed.TotalSeconds);
            long firstToken = arrival + (long)(answered.TimeToFirstToken * Stopwatch.Frequency);
            // Each stream's next token after the prompt's first one was held up by the same steps.
            await WaitFor([.. streams.Select(s => CountOf(s) + 1)]);

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
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(running);
        }
    }
}
