using BenchmarkDotNet.Attributes;
using Ftransformers.Kernels;
using Ftransformers.Model;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Several tokens routed to the same expert share one read of its weights: an INT4 gate projection (2048x7168) for
/// 1, 2, 4 and 16 tokens on all threads. The Ratio column is the cost relative to one token.
/// </summary>
[MedianColumn]
public class ExpertGemmBenchmark
{
    private ComputePool? _pool;
    private WeightMatrix _gate = null!;
    private float[] _x = [], _y = [];

    /// <summary>Tokens sharing the expert.</summary>
    [Params(1, 2, 4, 16)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = Environment.ProcessorCount > 1 ? new ComputePool(Environment.ProcessorCount) : null;
        var rng = new Random(3);
        _gate = RandomWeights.Int4("gate", 2048, 7168, rng);
        _gate.Pool = _pool;
        _x = RandomWeights.Activations(Tokens * 7168, rng);
        _y = new float[Tokens * 2048];
    }

    [GlobalCleanup]
    public void Cleanup() => _pool?.Dispose();

    [Benchmark]
    public float Gemm()
    {
        _gate.Multiply(_x, _y, Tokens);
        return _y[0];
    }
}
