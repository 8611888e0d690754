using Ftransformers.Generation;
using Ftransformers.Model;
using Ftransformers.Tokenization;
using NUnit.Framework;
using Ftransformers.Inference;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Serving;

/// <summary>What one request streamed: its tokens, the logits behind them, the final usage.</summary>
internal sealed record Outcome(int[] Tokens, List<float[]> Logits, GenerationUsage? Usage, FinishReason? Finish, Exception? Error);

/// <summary>Builds sessions over the test models and runs requests through them, keeping what tests compare.</summary>
internal static class ServingHarness
{
    public static DeepSeekV3Model LoadModel(string name) => name switch
    {
        "fixture" => DeepSeekV3Model.Load(Fixtures.TinyV3),
        "synthetic" => DeepSeekV3Model.FromCheckpoint(SyntheticModels.Tiny, SyntheticCheckpoint.CreateInMemory(SyntheticModels.Tiny, seed: 1)),
        _ => throw new ArgumentException(name),
    };

    public static InferenceSession Session(string model, InferenceSessionOptions options) =>
        new(LoadModel(model), ByteTokenizer.Instance, options);

    public static async Task<Outcome> Run(InferenceSession session, GenerationRequest request, CancellationToken cancellationToken = default, Action<int>? onChunk = null)
    {
        var logits = new List<float[]>();
        var tokens = new List<int>();
        GenerationChunk? last = null;
        try
        {
            await foreach (GenerationChunk chunk in session.GenerateAsync(request, logits, cancellationToken))
            {
                tokens.AddRange(chunk.TokenIds);
                last = chunk;
                onChunk?.Invoke(tokens.Count);
            }
        }
        catch (Exception e)
        {
            // The loop may still be writing the sink of a cancelled request: only the delivered tokens are kept.
            return new Outcome([.. tokens], [], null, null, e);
        }
        return new Outcome([.. tokens], logits, last!.Usage, last.FinishReason, null);
    }

    public static GenerationRequest Request(IReadOnlyList<int> prompt, int maxTokens, SamplingOptions? sampling = null) =>
        new() { PromptTokens = prompt, MaxTokens = maxTokens, IgnoreEos = true, Sampling = sampling ?? SamplingOptions.Greedy };

    public static void AssertEqualsSolo(Outcome outcome, (int[] Tokens, List<float[]> Logits) solo, string what)
    {
        Assert.That(outcome.Error, Is.Null, what);
        Assert.That(outcome.Tokens, Is.EqualTo(solo.Tokens), what);
        Exactness.AssertRowsMatch(outcome.Logits, solo.Logits, what);
    }

    /// <summary>Waits until nothing runs or waits, then checks that every page is free or held by the prefix cache.</summary>
    public static async Task AssertNoLeak(InferenceSession session)
    {
        await WaitIdle(session);
        var (references, held, locked, free, pages) = await session.InspectAsync((pool, cache) =>
        {
            int[] refs = Enumerable.Range(0, pool.PageCount).Select(pool.References).ToArray();
            var counts = new int[pool.PageCount];
            foreach (int page in cache?.PageReferences() ?? [])
                counts[page]++;
            return (refs, counts, cache?.LockedNodes() ?? 0, pool.FreePages, pool.PageCount);
        });
        Assert.That(references, Is.EqualTo(held), "every page reference belongs to the prefix cache");
        Assert.That(locked, Is.Zero, "no prefix stays locked");
        Assert.That(free, Is.EqualTo(pages - held.Count(c => c > 0)));
    }

    /// <summary>
    /// Holds the engine loop between two steps until the result is disposed, so that what is submitted meanwhile
    /// queues up in a known order and the loop's next step sees all of it at once.
    /// </summary>
    public static async Task<IDisposable> HoldEngine(InferenceSession session)
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new ManualResetEventSlim();
        _ = session.InspectAsync((_, _) =>
        {
            held.SetResult();
            release.Wait();
            return 0;
        });
        await held.Task.WaitAsync(TimeSpan.FromMinutes(2));
        return new EngineHold(release);
    }

    private sealed class EngineHold(ManualResetEventSlim release) : IDisposable
    {
        public void Dispose() => release.Set();
    }

    public static async Task WaitIdle(InferenceSession session)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (session.GetStatistics() is { RunningRequests: > 0 } or { WaitingRequests: > 0 })
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"The session did not go idle: {session.GetStatistics()}");
            await Task.Delay(5);
        }
    }
}
