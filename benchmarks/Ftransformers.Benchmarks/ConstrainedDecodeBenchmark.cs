using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Ftransformers.Generation;
using Ftransformers.Serving;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Decode speed of one request on <c>synthetic:tiny</c> with and without a JSON Schema: each operation generates
/// <see cref="Tokens"/> tokens, the constrained request under a schema it cannot finish within them (an array of at
/// least 50 small objects), so both always produce the same count. Constrained / free = the free median / the
/// constrained median.
/// </summary>
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class ConstrainedDecodeBenchmark
{
    /// <summary>Tokens generated per operation.</summary>
    public const int Tokens = 64;

    private const string Schema =
        """{"type":"array","minItems":50,"items":{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string","maxLength":12},"ok":{"type":"boolean"}},"required":["id","name","ok"],"additionalProperties":false}}""";

    private InferenceSession _session = null!;
    private GenerationRequest _request = null!;

    /// <summary>Whether the request carries the schema.</summary>
    [Params(false, true)]
    public bool Constrained { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _session = InferenceSession.Load("synthetic:tiny");
        _request = new GenerationRequest
        {
            Prompt = "List the records as JSON:",
            MaxTokens = Tokens,
            Sampling = new SamplingOptions { Seed = 1 },
            IgnoreEos = !Constrained,
            ResponseFormat = Constrained ? ResponseFormat.ForJsonSchema(JsonDocument.Parse(Schema).RootElement) : ResponseFormat.Text,
        };
    }

    [GlobalCleanup]
    public void Cleanup() => _session.Dispose();

    [Benchmark(OperationsPerInvoke = Tokens)]
    public async Task<int> DecodePerToken()
    {
        int tokens = 0;
        await foreach (GenerationChunk chunk in _session.GenerateAsync(_request))
            tokens += chunk.TokenIds.Count;
        return tokens == Tokens ? tokens : throw new InvalidOperationException($"Generated {tokens} tokens, not {Tokens}.");
    }
}
