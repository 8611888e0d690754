using BenchmarkDotNet.Attributes;
using Ftransformers.Kernels;
using Ftransformers.Model;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Benchmarks;

/// <summary>
/// One token through a [Rows, Cols] linear layer (GEMV), the shape of a DeepSeek-V3 expert's gate projection:
/// F32 weights (58.7 MB at 2048x7168) and BF16 weights (29.4 MB). <see cref="ReadF32Buffer"/> sums a buffer of the
/// F32 weights' size, the machine's read bandwidth in the same run: GEMV time over it is the fraction of bandwidth reached.
/// </summary>
public class GemvBenchmark
{
    private WeightMatrix _f32 = null!, _bf16 = null!;
    private float[] _x = null!, _y = null!;
    private float[] _buffer = null!;

    [Params(2048)]
    public int Rows { get; set; }

    [Params(7168)]
    public int Cols { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        var w = new float[Rows * Cols];
        for (int i = 0; i < w.Length; i++)
            w[i] = (float)rng.NextDouble() - 0.5f;
        _f32 = new F32WeightMatrix("f32", Rows, Cols, w);
        _bf16 = new Bf16WeightMatrix("bf16", Rows, Cols, w);
        _x = Enumerable.Range(0, Cols).Select(i => (float)Math.Sin(i)).ToArray();
        _y = new float[Rows];
        _buffer = w;
    }

    [Benchmark]
    public float ReadF32Buffer() => System.Numerics.Tensors.TensorPrimitives.Sum(_buffer);

    [Benchmark(Baseline = true)]
    public void F32() => _f32.Multiply(_x, _y, 1);

    [Benchmark]
    public void Bf16() => _bf16.Multiply(_x, _y, 1);
}
