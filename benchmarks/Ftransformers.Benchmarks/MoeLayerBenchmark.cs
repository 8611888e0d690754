using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using Ftransformers.Backends;
using Ftransformers.Backends.Cpu;
using Ftransformers.Diagnostics;
using Ftransformers.Threading;

namespace Ftransformers.Benchmarks;

/// <summary>
/// One MoE layer of DeepSeek-V3 at its real widths in w8a8-int4 (hidden 7168; 8 routed experts of width 2048 per token
/// in INT4 g32 with F16 scale and min, 27.5 MB each; the shared expert in W8A8, 44.1 MB) for 1 and 4 tokens routed to
/// disjoint experts, as decode of that many requests reads them, on all threads:
/// <list type="bullet">
/// <item><see cref="PerMatrixForkJoins"/>: the engine before the backend seam; experts one after another, each
/// product its own fork-join (3 per expert), then the shared expert (3 more): 27 fork-joins for 1 token, 99 for 4.</item>
/// <item><see cref="OneJobSharedOnCaller"/>: <see cref="CpuExpertBackend"/>; all routed work as one job, the shared
/// expert computed by the caller alone while the workers run it, as the CPU attention backend does: 1 fork-join.</item>
/// <item><see cref="OneJobPerLayer"/>: the same job, then the shared expert on all threads: 4 fork-joins (the
/// alternative for a CPU attention backend).</item>
/// </list>
/// Calls cycle through <see cref="Layers"/> layers so that none finds its weights in the L3 cache. The GB/s and
/// share-of-bandwidth columns divide the bytes a call streams by its median, against <see cref="ReadBandwidth"/> (a sum
/// over 1 GiB on all threads) measured in the same run.
/// </summary>
[MedianColumn]
[Config(typeof(StreamingColumns))]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class MoeLayerBenchmark
{
    internal const int Hidden = 7168, Width = 2048, TopK = 8, Layers = 3;
    internal const long ExpertBytes = 3L * Width * Hidden * 5 / 8;                         // INT4 g32: 4 bits + F16 scale and min per 32
    internal const long SharedBytes = 3L * Width * Hidden + 4L * (2 * Width + Hidden);      // INT8 codes + F32 row scales

    private ComputePool _pool = null!;
    private CpuExpertBackend _backend = null!;
    private Mlp[][] _experts = [];
    private Mlp[] _shared = [];
    private ExpertBatch _batch = null!;
    private float[] _sharedOut = [], _input = [], _output = [];
    private MemoryReadProbe _read = null!;
    private int _layer;

    /// <summary>Tokens in the step, each routed to 8 experts of its own.</summary>
    [Params(1, 4)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = new ComputePool(CpuTopology.Detect(Environment.ProcessorCount));
        var rng = new Random(11);
        int experts = TopK * Tokens;
        _experts = [.. Enumerable.Range(0, Layers).Select(_ => Enumerable.Range(0, experts).Select(e => new Mlp(
            RandomWeights.Int4($"gate{e}", Width, Hidden, rng), RandomWeights.Int4($"up{e}", Width, Hidden, rng), RandomWeights.Int4($"down{e}", Hidden, Width, rng))).ToArray())];
        _shared = [.. Enumerable.Range(0, Layers).Select(_ => new Mlp(RandomWeights.Int8("shared.gate", Width, Hidden, rng), RandomWeights.Int8("shared.up", Width, Hidden, rng), RandomWeights.Int8("shared.down", Hidden, Width, rng)))];
        foreach (Mlp mlp in _experts.SelectMany(l => l).Concat(_shared))
            mlp.Gate.Pool = mlp.Up.Pool = mlp.Down.Pool = _pool;
        _backend = new CpuExpertBackend(_pool, Hidden, Width, TopK, Layers, layer => _experts[layer]);
        _batch = new ExpertBatch(Hidden, TopK);
        _input = RandomWeights.Activations(Tokens * Hidden, rng);
        _output = new float[Tokens * Hidden];
        _sharedOut = new float[Tokens * Hidden];
        _read = new MemoryReadProbe(_pool);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _backend.Dispose();
        _read.Dispose();
        _pool.Dispose();
    }

    private int NextLayer() => _layer = (_layer + 1) % Layers;

    /// <summary>Sums 1 GiB of floats on all threads: the read bandwidth the layer is measured against.</summary>
    [Benchmark(Baseline = true)]
    public float ReadBandwidth() => _read.Read();

    /// <summary>Routed experts one by one (3 fork-joins each), then the shared expert, as the engine did before the seam.</summary>
    [Benchmark]
    public float PerMatrixForkJoins()
    {
        int layer = NextLayer();
        Array.Clear(_output);
        float[] expertOut = _sharedOut;
        for (int t = 0; t < Tokens; t++)
            for (int j = 0; j < TopK; j++)
            {
                Span<float> x = _input.AsSpan(t * Hidden, Hidden), y = expertOut.AsSpan(0, Hidden);
                _experts[layer][t * TopK + j].Forward(x, y, 1);
                TensorPrimitives.MultiplyAdd(y, 0.125f, _output.AsSpan(t * Hidden, Hidden), _output.AsSpan(t * Hidden, Hidden));
            }
        _shared[layer].Forward(_input, _sharedOut, Tokens);
        TensorPrimitives.Add(_output, _sharedOut, _output);
        return _output[0];
    }

    /// <summary>All routed work as one job, then the shared expert on all threads.</summary>
    [Benchmark]
    public float OneJobPerLayer()
    {
        int layer = Route();
        _backend.Submit(_batch);
        _backend.Wait();
        _shared[layer].Forward(_input, _sharedOut, Tokens);
        TensorPrimitives.Add(_batch.Output, _sharedOut, _output);
        return _output[0];
    }

    private int Route()
    {
        int layer = NextLayer();
        _batch.Reset(layer, Tokens);
        _input.CopyTo(_batch.Input);
        for (int s = 0; s < Tokens * TopK; s++)
            _batch.Experts[s] = s;
        _batch.Weights.Fill(0.125f);
        return layer;
    }

    /// <summary>All routed work as one job on the workers, the shared expert on the caller meanwhile.</summary>
    [Benchmark]
    public float OneJobSharedOnCaller()
    {
        int layer = Route();
        _backend.Submit(_batch);
        _shared[layer].Forward(_input, _sharedOut, Tokens);
        _backend.Wait();
        TensorPrimitives.Add(_batch.Output, _sharedOut, _output);
        return _output[0];
    }

    /// <summary>GB/s streamed by each case and its share of the read bandwidth of the same run.</summary>
    private sealed class StreamingColumns : ManualConfig
    {
        public StreamingColumns() => AddColumn(
            new RateColumn("GBps", "GB/s", "bytes the call streams / median time", Bytes),
            new RateColumn("BandwidthShare", "Share of read bandwidth", "GB/s of the case over GB/s of ReadBandwidth (same run, same token count)", Bytes, nameof(ReadBandwidth)));

        private static double Bytes(BenchmarkCase benchmarkCase) => benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(ReadBandwidth)
            ? MemoryReadProbe.DefaultBytesPerNode * CpuTopology.Detect(Environment.ProcessorCount).Nodes.Count
            : (int)benchmarkCase.Parameters["Tokens"] * TopK * ExpertBytes + SharedBytes;
    }
}
