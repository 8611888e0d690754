using BenchmarkDotNet.Attributes;
using Ftransformers.Generation;
using Ftransformers.Model;
using Ftransformers.Tokenization;
using Ftransformers.Inference;
using Ftransformers.Serving;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Time to first token of a 2048-token prompt on the <c>v3-layout</c> synthetic model, when its first 2040 tokens
/// are in the prefix cache (8 tokens are computed) and when the cache is off (all 2048 are). Each cached run ends
/// the prompt with new tokens, so exactly 2040 are reused every time.
/// </summary>
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 9)]
public class PrefixCacheTtftBenchmark
{
    private const int PromptTokens = 2048, CachedTokens = 2040;
    private InferenceSession _cached = null!, _uncached = null!;
    private int[] _prefix = null!;
    private int _run;

    [GlobalSetup]
    public void Setup()
    {
        DeepSeekV3Config config = SyntheticModels.V3Layout;
        var random = new Random(1);
        _prefix = Enumerable.Range(0, CachedTokens).Select(_ => random.Next(2, config.VocabSize)).ToArray();
        _cached = Session(enablePrefixCache: true);
        _uncached = Session(enablePrefixCache: false);
        Ttft(_cached, _prefix).GetAwaiter().GetResult(); // caches the 2040 prompt tokens
    }

    private static InferenceSession Session(bool enablePrefixCache)
    {
        DeepSeekV3Config config = SyntheticModels.V3Layout;
        var model = DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 1));
        return new InferenceSession(model, ByteTokenizer.Instance, new InferenceSessionOptions { EnablePrefixCache = enablePrefixCache, MaxTotalTokens = 4096 });
    }

    // A suffix that differs from every earlier run's at its first token, so the cache reuses exactly the prefix.
    private int[] NextPrompt()
    {
        int run = _run++;
        return [.. _prefix, 2 + run % 1000, 2 + run / 1000 % 1000, 3, 4, 5, 6, 7, 8];
    }

    private static async Task<TimeSpan> Ttft(InferenceSession session, int[] prompt)
    {
        var request = new GenerationRequest { PromptTokens = prompt, MaxTokens = 1, IgnoreEos = true, Sampling = SamplingOptions.Greedy };
        GenerationUsage? usage = null;
        await foreach (GenerationChunk chunk in session.GenerateAsync(request))
            usage = chunk.Usage;
        return usage!.TimeToFirstToken;
    }

    /// <summary>All 2048 prompt tokens computed.</summary>
    [Benchmark(Baseline = true)]
    public Task<TimeSpan> Uncached() => Ttft(_uncached, NextPrompt());

    /// <summary>2040 prompt tokens from the prefix cache, 8 computed.</summary>
    [Benchmark]
    public Task<TimeSpan> Cached() => Ttft(_cached, NextPrompt());

    [GlobalCleanup]
    public void Cleanup()
    {
        _cached.Dispose();
        _uncached.Dispose();
    }
}
