using BenchmarkDotNet.Attributes;
using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Benchmarks;

/// <summary>
/// One forward pass of the <c>v3-layout</c> synthetic model carrying the decode tokens of <see cref="Batch"/>
/// sequences (each after 32 cached tokens), without the engine around it: how the model's cost grows with the
/// batch. Time per sequence is Mean / Batch.
/// </summary>
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class BatchedDecodeStepBenchmark
{
    private const int Context = 32;
    private DeepSeekV3Model _model = null!;
    private KvCachePool _pool = null!;
    private ILatentStore _kv = null!;
    private ForwardBatch _batch = null!;
    private float[] _logits = null!;

    /// <summary>Sequences in the step.</summary>
    [Params(1, 2, 4, 8)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        DeepSeekV3Config config = SyntheticModels.V3Layout;
        _model = DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 1));
        _pool = new KvCachePool(16, 64);
        _kv = _model.AttentionBackend.CreateKvCache(_pool.CapacityTokens, KvCacheDType.F32);
        _batch = new ForwardBatch();
        var random = new Random(1);
        var tables = new List<List<int>>();
        for (int s = 0; s < Batch; s++)
        {
            var table = new List<int> { _pool.Allocate(), _pool.Allocate(), _pool.Allocate() };
            int[] prompt = Enumerable.Range(0, Context).Select(_ => random.Next(2, config.VocabSize)).ToArray();
            _batch.Clear(_pool.PageSize);
            _batch.AddSequence(prompt, 0, table, logits: true);
            _model.Forward(_batch, _kv, new float[config.VocabSize]);
            tables.Add(table);
        }
        _batch.Clear(_pool.PageSize);
        for (int s = 0; s < Batch; s++)
            _batch.AddSequence([random.Next(2, config.VocabSize)], Context, tables[s], logits: true);
        _logits = new float[Batch * config.VocabSize];
    }

    /// <summary>The decode step (it rewrites the same KV slot each time).</summary>
    [Benchmark]
    public void Step() => _model.Forward(_batch, _kv, _logits);

    [GlobalCleanup]
    public void Cleanup()
    {
        _kv.Dispose();
        _model.Dispose();
    }
}
