using BenchmarkDotNet.Attributes;
using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Benchmarks;

/// <summary>One incremental decode step of the tiny DeepSeek-V3 architecture, after a prompt of <see cref="Context"/> tokens.</summary>
[MemoryDiagnoser]
public class DecodeStepBenchmark
{
    private DeepSeekV3Model _model = null!;
    private SequenceKvCache _cache = null!;

    /// <summary>Tokens already in the cache.</summary>
    [Params(100, 1000)]
    public int Context { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        DeepSeekV3Config config = SyntheticModels.Tiny;
        _model = DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 1));
        _cache = new SequenceKvCache(config);
        _model.Forward(Enumerable.Range(0, Context).Select(i => (i * 37 + 5) % config.VocabSize).ToArray(), _cache);
    }

    [Benchmark]
    public float[] DecodeStep()
    {
        float[] logits = _model.Forward([42], _cache);
        _cache.Truncate(Context);
        return logits;
    }

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();
}
