using Ftransformers.Generation;
using Ftransformers.Model;
using NUnit.Framework;
using static Ftransformers.Tests.Serving.ServingHarness;
using Ftransformers.Inference;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Serving;

/// <summary>Eviction order, bad input, the bounded queue, cancellation, statistics and per-request metrics.</summary>
[TestFixture]
public class ServingBehaviourTests
{
    private DeepSeekV3Model _reference = null!;

    [OneTimeSetUp]
    public void Load() => _reference = LoadModel("synthetic");

    [OneTimeTearDown]
    public void Unload() => _reference.Dispose();

    private static int[] Tokens(int seed, int count)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(2, 1024)).ToArray();
    }

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"Timed out waiting until {what}.");
            await Task.Delay(2);
        }
    }

    [Test]
    public async Task UnderMemoryPressure_TheLeastRecentlyUsedPrefixGoesFirst()
    {
        // 64 slots in pages of 4. Each of a, b, c leaves 24 cached tokens (6 pages); d needs 40 tokens (10 pages).
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { MaxTotalTokens = 64, KvCachePageSize = 4 });
        int[] a = Tokens(1, 24), b = Tokens(2, 24), c = Tokens(3, 24);
        await Run(session, Request(a, 1));
        await Run(session, Request(b, 1));
        await Run(session, Request(a, 1)); // a is used again: b is now the oldest
        await Run(session, Request(c, 1)); // 3 prefixes = 18 pages > 16: b goes

        Outcome afterPressure = await Run(session, Request([.. a, 5], 1));
        Assert.That(afterPressure.Usage!.CachedPromptTokens, Is.EqualTo(24), "a survived: used more recently than b");
        Assert.That((await Run(session, Request([.. b, 5], 1))).Usage!.CachedPromptTokens, Is.Zero, "b was evicted first");
        Assert.That(session.GetStatistics().PrefixCacheEvictedTokens, Is.GreaterThan(0));
        await AssertNoLeak(session);
    }

    [Test]
    public async Task ARequestArrivingWhileAnotherDecodes_ReusesItsPrompt_AndEqualsItsSoloRun()
    {
        // Pages of 16: the 40-token prompt ends inside a page that the running request keeps writing into.
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { KvCachePageSize = 16 });
        int[] prompt = Tokens(5, 40);
        using var cancel = new CancellationTokenSource();
        Task<Outcome> first = Run(session, Request(prompt, 100_000), cancel.Token);
        await WaitUntil(() => session.GetStatistics().PrefixCacheTokens >= 40, "the first request's prefill is cached");

        int[] second = [.. prompt, 3, 4];
        Outcome outcome = await Run(session, Request(second, 12));
        Assert.That(session.GetStatistics().RunningRequests, Is.EqualTo(1), "the first request still runs");
        cancel.Cancel();
        await first;
        Assert.That(outcome.Usage!.CachedPromptTokens, Is.EqualTo(40));
        AssertEqualsSolo(outcome, Exactness.Solo(_reference, second, 12, SamplingOptions.Greedy), "second request");
        await AssertNoLeak(session);
    }

    [Test]
    public async Task ARunningRequestsKv_IsNeverEvicted_WhileOthersCompeteForThePool()
    {
        // The long request reuses a cached prefix (locked while it runs) and grows to 130 tokens in a 160-slot pool
        // that a stream of short requests keeps filling with prefixes to evict.
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { MaxTotalTokens = 160, KvCachePageSize = 4, MaxRunningRequests = 2 });
        int[] system = Tokens(7, 40);
        await Run(session, Request(system, 1));
        int[] prompt = [.. system, .. Tokens(8, 10)];
        Task<Outcome> longRunning = Run(session, Request(prompt, 80));
        var others = new List<Task<Outcome>>();
        for (int i = 0; i < 12; i++)
            others.Add(Run(session, Request(Tokens(100 + i, 20), 3)));

        Outcome outcome = await longRunning;
        await Task.WhenAll(others);
        Assert.That(outcome.Usage!.CachedPromptTokens, Is.EqualTo(40));
        AssertEqualsSolo(outcome, Exactness.Solo(_reference, prompt, 80, SamplingOptions.Greedy), "long request");
        foreach (var (other, i) in others.Select((t, i) => (t.Result, i)))
            AssertEqualsSolo(other, Exactness.Solo(_reference, Tokens(100 + i, 20), 3, SamplingOptions.Greedy), $"short request {i}");
        Assert.That(session.GetStatistics().PrefixCacheEvictedTokens, Is.GreaterThan(0));
        await AssertNoLeak(session);
    }

    [Test]
    public async Task APromptThatDoesNotFitTheKvCache_IsRejected_NamingMaxTotalTokens()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { MaxTotalTokens = 50 });
        Outcome outcome = await Run(session, Request(Tokens(1, 50), 1));
        Assert.That(outcome.Error, Is.TypeOf<ArgumentException>());
        Assert.That(outcome.Error!.Message, Does.Contain("MaxTotalTokens").And.Contain("50 tokens"));
        Assert.That(session.GetStatistics() is { RunningRequests: 0, WaitingRequests: 0, KvCacheTokensUsed: 0 }, Is.True);
        AssertEqualsSolo(await Run(session, Request(Tokens(1, 49), 1)), Exactness.Solo(_reference, Tokens(1, 49), 1, SamplingOptions.Greedy), "the largest prompt that fits");
    }

    [Test]
    public async Task ARequestThatOutgrowsTheKvCache_EndsWithLength_AtItsCapacity()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { MaxTotalTokens = 40, KvCachePageSize = 4 });
        int[] prompt = Tokens(4, 30);
        Outcome outcome = await Run(session, Request(prompt, 100));
        // 40 slots hold the prompt and 10 generated tokens; the 11th is sampled but has nowhere to go.
        Assert.That(outcome.Finish, Is.EqualTo(FinishReason.Length));
        Assert.That(outcome.Usage!.CompletionTokens, Is.EqualTo(11));
        AssertEqualsSolo(outcome, Exactness.Solo(_reference, prompt, 11, SamplingOptions.Greedy), "capped request");
        await AssertNoLeak(session);
    }

    [Test]
    public async Task AFullQueue_RejectsTheNextRequestWithQueueFullException_AndServesTheOthers()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { MaxRunningRequests = 1, MaxWaitingRequests = 1 });
        using var stopFirst = new CancellationTokenSource();
        Task<Outcome> first = Run(session, Request(Tokens(1, 5), 100_000), stopFirst.Token);
        await WaitUntil(() => session.GetStatistics().RunningRequests == 1, "the first request runs");
        Task<Outcome> second = Run(session, Request(Tokens(2, 5), 3));
        await WaitUntil(() => session.GetStatistics().WaitingRequests == 1, "the second request waits");

        Outcome third = await Run(session, Request(Tokens(3, 5), 3));
        Assert.That(third.Error, Is.TypeOf<QueueFullException>());
        Assert.That(third.Error!.Message, Does.Contain("MaxWaitingRequests").And.Contain("1 requests"));

        stopFirst.Cancel();
        Assert.That((await first).Error, Is.InstanceOf<OperationCanceledException>());
        AssertEqualsSolo(await second, Exactness.Solo(_reference, Tokens(2, 5), 3, SamplingOptions.Greedy), "second");
        await AssertNoLeak(session);
    }

    [Test]
    public async Task Cancellation_FreesTheRequestsPagesAtOnce()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { EnablePrefixCache = false });
        using var cancel = new CancellationTokenSource();
        Outcome outcome = await Run(session, Request(Tokens(1, 30), 10_000), cancel.Token, onChunk: n =>
        {
            if (n == 5)
                cancel.Cancel();
        });
        Assert.That(outcome.Error, Is.InstanceOf<OperationCanceledException>());
        Assert.That(outcome.Tokens, Has.Length.EqualTo(5));
        await WaitIdle(session);
        Assert.That(await session.InspectAsync((pool, _) => pool.UsedPages), Is.Zero);
        Assert.That(session.GetStatistics().KvCacheTokensUsed, Is.Zero);
    }

    [Test]
    public async Task AReaderThatStopsEarly_ReleasesItsRequest()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { EnablePrefixCache = false });
        await foreach (GenerationChunk _ in session.GenerateAsync(Request(Tokens(1, 10), 10_000)))
            break;
        await WaitIdle(session);
        Assert.That(await session.InspectAsync((pool, _) => pool.UsedPages), Is.Zero);
    }

    [Test]
    public async Task Statistics_ReportRunningRequestsAndKvSlots()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { MaxTotalTokens = 1000, KvCachePageSize = 16 });
        Assert.That(session.GetStatistics(), Is.EqualTo(new SessionStatistics(0, 0, 0, 1008)));
        using var cancel = new CancellationTokenSource();
        Task<Outcome> running = Run(session, Request(Tokens(1, 40), 100_000), cancel.Token);
        await WaitUntil(() => session.GetStatistics().RunningRequests == 1, "the request runs");
        Assert.That(session.GetStatistics().KvCacheTokensUsed, Is.GreaterThanOrEqualTo(48));
        cancel.Cancel();
        await running;

        // The cancelled request's prompt was cached when its prefill ended (40 tokens, 3 pages); the next request's 24
        // computed tokens are cached when it finishes (2 pages). Nothing else holds a page.
        await Run(session, Request(Tokens(2, 20), 5));
        await WaitIdle(session);
        SessionStatistics after = session.GetStatistics();
        Assert.That((after.RunningRequests, after.WaitingRequests, after.KvCacheTokensUsed, after.PrefixCacheTokens), Is.EqualTo((0, 0, 80L, 64L)));
    }

    [Test]
    public async Task TheFinalChunk_CarriesQueueTime_TimeToFirstToken_CachedTokens_AndDecodeSpeed()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions());
        int[] prompt = Tokens(1, 40);
        await Run(session, Request(prompt, 2));
        Outcome outcome = await Run(session, Request([.. prompt, 9, 9], 20));
        GenerationUsage usage = outcome.Usage!;
        Assert.That(usage.PromptTokens, Is.EqualTo(42));
        Assert.That(usage.CompletionTokens, Is.EqualTo(20));
        Assert.That(usage.CachedPromptTokens, Is.EqualTo(40));
        Assert.That(usage.QueueTime, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(usage.TimeToFirstToken, Is.GreaterThan(usage.QueueTime));
        Assert.That(usage.DecodeTokensPerSecond, Is.GreaterThan(0));
    }

    [Test]
    public async Task Dispose_EndsOpenStreams_AndLaterRequestsAreRefused()
    {
        InferenceSession session = Session("synthetic", new InferenceSessionOptions());
        var received = new TaskCompletionSource();
        Task<Outcome> running = Run(session, Request(Tokens(1, 5), 100_000), onChunk: _ => received.TrySetResult());
        await received.Task;
        session.Dispose();
        Assert.That((await running).Error, Is.InstanceOf<ObjectDisposedException>());
        Assert.That((await Run(session, Request(Tokens(1, 5), 1))).Error, Is.InstanceOf<ObjectDisposedException>());
        session.Dispose();
    }

    private static IEnumerable<TestCaseData> BadOptions()
    {
        yield return new TestCaseData(new InferenceSessionOptions { MaxTotalTokens = 1 }, "MaxTotalTokens");
        yield return new TestCaseData(new InferenceSessionOptions { ChunkedPrefillSize = 0 }, "ChunkedPrefillSize");
        yield return new TestCaseData(new InferenceSessionOptions { MaxRunningRequests = 0 }, "MaxRunningRequests");
        yield return new TestCaseData(new InferenceSessionOptions { MaxWaitingRequests = 0 }, "MaxWaitingRequests");
        yield return new TestCaseData(new InferenceSessionOptions { KvCacheDType = (Ftransformers.Memory.KvCacheDType)7 }, "KvCacheDType");
        yield return new TestCaseData(new InferenceSessionOptions { KvCachePageSize = 0 }, "KvCachePageSize");
    }

    [TestCaseSource(nameof(BadOptions))]
    public void OutOfRangeOptions_AreRejected_NamingTheOption(InferenceSessionOptions options, string name)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.That(e!.ParamName, Is.EqualTo(name));
        Assert.That(e.Message, Does.Contain(name));
        Assert.Throws<ArgumentOutOfRangeException>(() => InferenceSession.Load(options));
    }
}
