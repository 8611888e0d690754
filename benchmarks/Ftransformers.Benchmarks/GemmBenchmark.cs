using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Diagnostics;
using Ftransformers.Threading;

namespace Ftransformers.Benchmarks;

/// <summary>The INT4, W8A8 and GGUF K-quant kernels, each on one instruction-set path.</summary>
public enum GemmKernel
{
    Int4Avx2,
    Int4Avx512,
    W8A8Avx2,
    W8A8AvxVnni,
    Q4KAvx512,
    Q6KAvx512,
}

/// <summary>
/// The multi-token kernels at a DeepSeek-V3 shape (2048 x 7168: a routed expert's gate in INT4, 9.2 MB, Q4_K, 8.3 MB,
/// or Q6_K, 12.0 MB, or the shared expert's in W8A8, 14.7 MB) for 1 to 256 tokens on all threads, per kernel path,
/// against the compute peak of the same path measured in the same run (<see cref="ComputePeakProbe"/>). The weights stay in the L3 cache between
/// calls, so this measures compute, not memory (the streaming case is <see cref="MoeLayerBenchmark"/>). Activations
/// are quantized once, in set-up, as the engine does once per input and layer.
/// </summary>
[MedianColumn]
[Config(typeof(ComputeColumns))]
public class GemmBenchmark : IRangeWork
{
    private const int Rows = 2048, Cols = 7168, UnitRows = 32;

    private ComputePool? _pool;
    private Int4RowGroups _int4 = null!;
    private Int8Weights _int8 = null!;
    private Ftransformers.Backends.Cpu.KBlockWeightMatrix _kBlocks = null!;
    private readonly Int8Activations _x = new();
    private float[] _y = [];
    private ComputePeakProbe _peak = null!;

    /// <summary>Tokens sharing the weights.</summary>
    [Params(1, 4, 16, 64, 256)]
    public int Tokens { get; set; }

    /// <summary>The kernel and its path (the run fails where the CPU lacks it).</summary>
    [Params(GemmKernel.Int4Avx2, GemmKernel.Int4Avx512, GemmKernel.W8A8Avx2, GemmKernel.W8A8AvxVnni, GemmKernel.Q4KAvx512, GemmKernel.Q6KAvx512)]
    public GemmKernel Kernel { get; set; }

    private static KernelPath PathOf(GemmKernel kernel) => kernel switch
    {
        GemmKernel.Int4Avx512 or GemmKernel.Q4KAvx512 or GemmKernel.Q6KAvx512 => KernelPath.Avx512,
        GemmKernel.W8A8AvxVnni => KernelPath.AvxVnni,
        _ => KernelPath.Avx2,
    };

    private bool IsInt4 => Kernel is GemmKernel.Int4Avx2 or GemmKernel.Int4Avx512;

    private bool IsKBlocks => Kernel is GemmKernel.Q4KAvx512 or GemmKernel.Q6KAvx512;

    [GlobalSetup]
    public void Setup()
    {
        KernelPath path = PathOf(Kernel);
        if (!ComputePeakProbe.IsSupported(path))
            throw new PlatformNotSupportedException($"This CPU does not run the {path} path.");
        _pool = Environment.ProcessorCount > 1 ? new ComputePool(Environment.ProcessorCount) : null;
        var rng = new Random(3);
        float[] x = RandomWeights.Activations(Tokens * Cols, rng);
        if (IsInt4)
        {
            _int4 = Int4RowGroups.From(RandomWeights.Int4Rows(Rows, Cols, rng));
            _x.QuantizePerBlock(x, Tokens, Cols);
        }
        else if (IsKBlocks)
        {
            _kBlocks = Kernel == GemmKernel.Q4KAvx512 ? RandomWeights.Q4K("w", Rows, Cols, rng) : RandomWeights.Q6K("w", Rows, Cols, rng);
            _x.QuantizePerBlock(x, Tokens, Cols);
        }
        else
        {
            _int8 = RandomWeights.Int8("w", Rows, Cols, rng).Weights;
            _x.QuantizePerToken(x, Tokens, Cols);
        }
        _y = new float[Tokens * Rows];
        _peak = new ComputePeakProbe(path, threads: _pool?.ThreadCount ?? 1);
    }

    [GlobalCleanup]
    public void Cleanup() => _pool?.Dispose();

    /// <summary>Every row for every token, in chunks of 32 rows over the pool.</summary>
    [Benchmark]
    public float Gemm()
    {
        if (_pool != null)
            _pool.For(Rows / UnitRows, this);
        else
            Run(0, Rows / UnitRows);
        return _y[0];
    }

    /// <summary>The path's register-only multiply-add loop on every thread.</summary>
    [Benchmark]
    public int ComputePeak() => _peak.Run(_pool);

    public void Run(int start, int end)
    {
        if (IsInt4)
            Int4RowGroupKernel.RowsOn(PathOf(Kernel), _int4.Layout, start * UnitRows, end * UnitRows, _x, _y);
        else if (Kernel == GemmKernel.Q4KAvx512)
            Q4KRows.RowsOn(KernelPath.Avx512, _kBlocks.Layout, start * UnitRows, end * UnitRows, _x, _y);
        else if (Kernel == GemmKernel.Q6KAvx512)
            Q6KRows.RowsOn(KernelPath.Avx512, _kBlocks.Layout, start * UnitRows, end * UnitRows, _x, _y);
        else
            Int8Dot.RowsOn(PathOf(Kernel), _int8.Layout, start * UnitRows, end * UnitRows, _x, _y);
    }

    /// <summary>Multiply-adds per second of each case and their share of the path's peak in the same run.</summary>
    private sealed class ComputeColumns : ManualConfig
    {
        public ComputeColumns() => AddColumn(
            new RateColumn("GMACps", "GMAC/s", "multiply-adds / median time", MultiplyAdds),
            new RateColumn("PeakShare", "Share of compute peak", "GMAC/s of the case over GMAC/s of ComputePeak (same kernel path and run)", MultiplyAdds, nameof(ComputePeak)));

        private static double MultiplyAdds(BenchmarkCase benchmarkCase) => benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(ComputePeak)
            ? new ComputePeakProbe(PathOf((GemmKernel)benchmarkCase.Parameters["Kernel"]), threads: Environment.ProcessorCount > 1 ? Environment.ProcessorCount : 1).MultiplyAdds
            : (double)(int)benchmarkCase.Parameters["Tokens"] * Rows * Cols;
    }
}
