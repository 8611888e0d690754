using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Ftransformers.Generation;
using Ftransformers.Model;
using Ftransformers.Serving;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Aggregate decode speed of <see cref="Concurrency"/> requests served together on a synthetic model with DeepSeek-V3's
/// expert layout: <c>v3-layout</c> (F32 at laptop width, V3's shares of weights read per token; compute-bound here, its
/// weights mostly cache-resident) or <c>v3-real</c> (V3's real widths in w8a8-int4, one dense and one MoE layer, about
/// 12 GB; memory-bound like the real model, but its lm_head and dense layer weigh more than in 61 layers). One operation
/// is every request generating <see cref="TokensPerRequest"/> tokens. Prompts are in the prefix cache, so prefill
/// computes one token per request and the time is decoding. The <c>tok/s</c> column is Concurrency x TokensPerRequest
/// / median; <c>x vs 1</c> divides it by one request's on the same model.
/// </summary>
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 9)]
[Config(typeof(Columns))]
public class ConcurrentDecodeBenchmark
{
    /// <summary>Tokens each request generates per operation.</summary>
    public const int TokensPerRequest = 64;

    private InferenceSession _session = null!;
    private int[][] _prompts = null!;

    /// <summary>The synthetic model.</summary>
    [Params("v3-layout", "v3-real")]
    public string Model { get; set; } = "v3-layout";

    /// <summary>Requests decoding at once.</summary>
    [Params(1, 2, 4)]
    public int Concurrency { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        DeepSeekV3Config config = SyntheticModels.Get(Model);
        _session = InferenceSession.Load(new InferenceSessionOptions { Model = SyntheticModels.Prefix + Model, MaxTotalTokens = 4096 });
        var random = new Random(Concurrency);
        _prompts = Enumerable.Range(0, Concurrency).Select(_ => Enumerable.Range(0, 32).Select(_ => random.Next(2, config.VocabSize)).ToArray()).ToArray();
        Decode().GetAwaiter().GetResult(); // caches the prompts
    }

    private async Task Generate(int[] prompt)
    {
        var request = new GenerationRequest { PromptTokens = prompt, MaxTokens = TokensPerRequest, IgnoreEos = true, Sampling = SamplingOptions.Greedy };
        await foreach (GenerationChunk _ in _session.GenerateAsync(request))
        {
        }
    }

    /// <summary>All requests, submitted together (each call submits before its first await), to their last token.</summary>
    [Benchmark]
    public Task Decode() => Task.WhenAll(_prompts.Select(Generate).ToArray());

    [GlobalCleanup]
    public void Cleanup() => _session.Dispose();

    private sealed class Columns : ManualConfig
    {
        public Columns()
        {
            AddColumn(StatisticColumn.Median);
            AddColumn(new AggregateColumn("tok/s", "Aggregate decode tokens per second: Concurrency x TokensPerRequest / median", relativeToOne: false));
            AddColumn(new AggregateColumn("x vs 1", "Aggregate tokens per second relative to Concurrency = 1", relativeToOne: true));
        }
    }

    /// <summary>Aggregate tokens per second from the median, absolute or relative to one request.</summary>
    private sealed class AggregateColumn(string name, string legend, bool relativeToOne) : IColumn
    {
        public string Id => nameof(AggregateColumn) + name;
        public string ColumnName => name;
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => relativeToOne ? 1 : 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => legend;
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            double? rate = Rate(summary, benchmarkCase);
            if (rate is null)
                return "-";
            if (!relativeToOne)
                return rate.Value.ToString("F1");
            BenchmarkCase? one = summary.BenchmarksCases.FirstOrDefault(c =>
                (int)c.Parameters[nameof(Concurrency)] == 1 && Equals(c.Parameters[nameof(Model)], benchmarkCase.Parameters[nameof(Model)]));
            double? baseline = one != null ? Rate(summary, one) : null;
            return baseline is double b ? (rate.Value / b).ToString("F2") : "-";
        }

        private static double? Rate(Summary summary, BenchmarkCase benchmarkCase)
        {
            double? median = summary[benchmarkCase]?.ResultStatistics?.Median;
            int concurrency = (int)benchmarkCase.Parameters[nameof(Concurrency)];
            return median is double ns ? concurrency * TokensPerRequest / (ns / 1e9) : null;
        }
    }
}
