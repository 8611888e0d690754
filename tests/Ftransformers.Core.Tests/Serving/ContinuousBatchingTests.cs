using Ftransformers.Generation;
using Ftransformers.Model;
using NUnit.Framework;
using static Ftransformers.Tests.Serving.ServingHarness;
using Ftransformers.Inference;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Serving;

/// <summary>Many requests through one session: each must come out exactly as if it had run alone.</summary>
[TestFixture]
public class ContinuousBatchingTests
{
    private DeepSeekV3Model _fixture = null!, _synthetic = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _fixture = LoadModel("fixture");
        _synthetic = LoadModel("synthetic");
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _fixture.Dispose();
        _synthetic.Dispose();
    }

    private DeepSeekV3Model Reference(string model) => model == "fixture" ? _fixture : _synthetic;

    private static int[] RandomTokens(Random random, int count) => Enumerable.Range(0, count).Select(_ => random.Next(2, 1024)).ToArray();

    [TestCase("fixture", 1)]
    [TestCase("fixture", 2)]
    [TestCase("synthetic", 3)]
    [TestCase("synthetic", 4)]
    public async Task RandomMixOfConcurrentRequests_EachEqualsItsSoloRun(string model, int seed)
    {
        var random = new Random(seed);
        var options = new InferenceSessionOptions
        {
            ChunkedPrefillSize = random.Next(1, 40),
            MaxRunningRequests = random.Next(2, 6),
            KvCachePageSize = new[] { 1, 4, 16 }[random.Next(3)],
            MaxTotalTokens = 400,
        };
        using InferenceSession session = Session(model, options);
        int[] system = RandomTokens(random, 30);
        var requests = Enumerable.Range(0, 12).Select(i =>
        {
            int[] prompt = [.. random.Next(2) == 0 ? system[..random.Next(1, 31)] : [], .. RandomTokens(random, random.Next(1, 80))];
            SamplingOptions sampling = random.Next(3) == 0 ? new SamplingOptions { Temperature = 0.8f, Seed = i } : SamplingOptions.Greedy;
            return Request(prompt, random.Next(1, 13), sampling);
        }).ToArray();

        Outcome[] outcomes = await Task.WhenAll(requests.Select(r => Task.Run(() => Run(session, r))));
        for (int i = 0; i < requests.Length; i++)
            AssertEqualsSolo(outcomes[i], Exactness.Solo(Reference(model), requests[i].PromptTokens!, requests[i].MaxTokens, requests[i].Sampling), $"{options}, request {i}");
        await AssertNoLeak(session);
    }

    [Test]
    public async Task APromptPrefilledInChunks_EqualsOneFullPrefill([Values("fixture", "synthetic")] string model, [Values(1, 7, 64)] int chunk)
    {
        using InferenceSession session = Session(model, new InferenceSessionOptions { ChunkedPrefillSize = chunk, KvCachePageSize = 4 });
        int[] prompt = RandomTokens(new Random(chunk), 100);
        Outcome outcome = await Run(session, Request(prompt, 8));
        AssertEqualsSolo(outcome, Exactness.Solo(Reference(model), prompt, 8, SamplingOptions.Greedy), $"chunks of {chunk}");
    }

    [Test]
    public async Task ALongPromptIsPrefilledInChunks_WhileAnotherRequestKeepsDecoding()
    {
        using InferenceSession session = Session("synthetic", new InferenceSessionOptions { ChunkedPrefillSize = 16 });
        var random = new Random(5);
        int[] shortPrompt = RandomTokens(random, 4), longPrompt = RandomTokens(random, 400);

        // One sink for both: the loop appends sampled rows in step order.
        var rows = new List<float[]>();
        var decodingStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task<int[]> Generate(int[] prompt, int maxTokens)
        {
            var tokens = new List<int>();
            await foreach (GenerationChunk chunk in session.GenerateAsync(Request(prompt, maxTokens), rows, CancellationToken.None))
            {
                tokens.AddRange(chunk.TokenIds);
                decodingStarted.TrySetResult();
            }
            return [.. tokens];
        }
        Task<int[]> decoding = Generate(shortPrompt, 200);
        await decodingStarted.Task.WaitAsync(TimeSpan.FromMinutes(2)); // the short request is decoding when the long one arrives
        int[] longTokens = await Generate(longPrompt, 1);
        int[] shortTokens = await decoding;

        var soloLong = Exactness.Solo(_synthetic, longPrompt, 1, SamplingOptions.Greedy);
        Assert.That(longTokens, Is.EqualTo(soloLong.Tokens));
        int longRow = rows.FindIndex(r => Exactness.RelativeError(r, soloLong.Logits[0]) <= Exactness.RelativeBound);
        // 400 prompt tokens at 16 a step take 25 steps; the short request decodes a token in each of them.
        Assert.That(longRow, Is.GreaterThanOrEqualTo(24), "tokens of the short request sampled before the long prompt's first token");
        Assert.That(shortTokens, Is.EqualTo(Exactness.Solo(_synthetic, shortPrompt, 200, SamplingOptions.Greedy).Tokens));
    }

    [Test]
    public async Task ARequestWhosePrefixIsCached_EqualsTheSameRequestWithTheCacheDisabled([Values("fixture", "synthetic")] string model)
    {
        var random = new Random(11);
        var options = new InferenceSessionOptions { KvCachePageSize = 16 };
        using InferenceSession cached = Session(model, options);
        using InferenceSession uncached = Session(model, options with { EnablePrefixCache = false });

        // Turn 1, then turn 2 = turn 1's prompt and answer plus a new message (37 + 9 - 1 = 45 cached: not page-aligned).
        int[] turn1 = RandomTokens(random, 37);
        Outcome first = await Run(cached, Request(turn1, 9));
        Assert.That(first.Usage!.CachedPromptTokens, Is.Zero);
        int[] turn2 = [.. turn1, .. first.Tokens, .. RandomTokens(random, 12)];
        int[] same = [.. turn1];

        foreach ((string what, int[] prompt, int expectedCached) in new[] { ("multi-turn", turn2, 45), ("repeated prompt", same, 36) })
        {
            Outcome hit = await Run(cached, Request(prompt, 10));
            Outcome miss = await Run(uncached, Request(prompt, 10));
            Assert.That(hit.Usage!.CachedPromptTokens, Is.EqualTo(expectedCached), what);
            Assert.That(miss.Usage!.CachedPromptTokens, Is.Zero, what);
            Assert.That(hit.Tokens, Is.EqualTo(miss.Tokens), what);
            Exactness.AssertRowsMatch(hit.Logits, miss.Logits, what);
        }
        SessionStatistics statistics = cached.GetStatistics();
        Assert.That(statistics.PrefixCacheLookups, Is.EqualTo(3));
        Assert.That(statistics.PrefixCacheHitTokens, Is.EqualTo(45 + 36));
        Assert.That(uncached.GetStatistics().PrefixCacheLookups, Is.Zero);
        await AssertNoLeak(cached);
        await AssertNoLeak(uncached);
    }

    [Test]
    public async Task Bf16KvCache_GeneratesCloseToF32()
    {
        using InferenceSession bf16 = Session("fixture", new InferenceSessionOptions { KvCacheDType = Ftransformers.Memory.KvCacheDType.BF16 });
        int[] prompt = RandomTokens(new Random(3), 60);
        Outcome outcome = await Run(bf16, Request(prompt, 4));
        var solo = Exactness.Solo(_fixture, prompt, 4, SamplingOptions.Greedy);
        double error = Exactness.RelativeError(outcome.Logits[0], solo.Logits[0]);
        Assert.That(error, Is.GreaterThan(0).And.LessThan(0.05));
        Assert.That(bf16.GetStatistics().KvCacheTokensTotal, Is.EqualTo(_fixture.Config.MaxPositionEmbeddings));
    }
}
