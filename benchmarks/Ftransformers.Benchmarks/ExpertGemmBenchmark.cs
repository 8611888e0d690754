using BenchmarkDotNet.Attributes;
using Ftransformers.Kernels;
using Ftransformers.Model;
using Ftransformers.Threading;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Several tokens routed to the same expert share one read of its weights: INT4 gate projections (2048x7168, 9.2 MB
/// each) for 1, 2, 4 and 16 tokens on all threads. With one expert the weights stay in the 32 MB L3 cache between
/// calls (compute-bound); cycling through 32 experts streams 294 MB from DRAM per call, as decode does (with 8, 73 MB,
/// the L3 kept part of the set between calls and one token ran faster than DRAM allows). Compare each row's median
/// with the 1-token row of the same expert count.
/// </summary>
[MedianColumn]
public class ExpertGemmBenchmark
{
    private ComputePool? _pool;
    private WeightMatrix[] _gates = [];
    private float[] _x = [], _y = [];

    /// <summary>Tokens sharing the expert.</summary>
    [Params(1, 2, 4, 16)]
    public int Tokens { get; set; }

    /// <summary>Distinct experts the calls cycle through (1: cache-resident, 32: DRAM-streaming).</summary>
    [Params(1, 32)]
    public int Experts { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = Environment.ProcessorCount > 1 ? new ComputePool(Environment.ProcessorCount) : null;
        var rng = new Random(3);
        _gates = Enumerable.Range(0, Experts).Select(e => (WeightMatrix)RandomWeights.Int4($"gate{e}", 2048, 7168, rng)).ToArray();
        foreach (WeightMatrix gate in _gates)
            gate.Pool = _pool;
        _x = RandomWeights.Activations(Tokens * 7168, rng);
        _y = new float[Tokens * 2048];
    }

    [GlobalCleanup]
    public void Cleanup() => _pool?.Dispose();

    /// <summary>One product per expert.</summary>
    [Benchmark]
    public float Gemm()
    {
        foreach (WeightMatrix gate in _gates)
            gate.Multiply(_x, _y, Tokens);
        return _y[0];
    }
}
