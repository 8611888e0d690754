using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using Ftransformers.Kernels;
using Ftransformers.Model;
using Ftransformers.Diagnostics;
using Ftransformers.Threading;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Decode-time weight streaming at DeepSeek-V3's real shapes, beside the machine's read bandwidth measured in the
/// same run. Bytes per call: <see cref="ReadBandwidth"/> 1 GiB; <see cref="MoeLayerInt4"/> 8 experts x (gate and up
/// 2048x7168, down 7168x2048) in INT4 g32 with F16 scale and min = 220.2 MB; <see cref="MoeLayerQ4K"/> the same in Q4_K
/// (144 bytes per 256 weights) = 198.2 MB; <see cref="MoeLayerQ4KM"/> the same with down in Q6_K (210 bytes per 256), as
/// Q4_K_M files hold some layers' experts, = 228.5 MB; <see cref="AttentionW8A8"/> q_a 1536x7168,
/// q_b 24576x1536, kv_a 576x7168, kv_b 32768x512, o 7168x16384 in INT8 with row scales = 211.8 MB. GB/s = bytes / median.
/// Calls cycle through <see cref="Layers"/> layers' weights, as decode does, so that no call finds the previous one's
/// weights in the 32 MB L3 (whose replacement kept part of a single layer's set between calls).
/// </summary>
[MedianColumn]
public class ExpertKernelBenchmarks
{
    private const int Hidden = 7168, ExpertWidth = 2048, Experts = 8, Layers = 4;
    private ComputePool? _pool;
    private WeightMatrix[][] _gate = [], _up = [], _down = [], _attention = [], _q4k = [], _q4km = [];
    private int _layer;
    private float[] _x = [], _h = [], _out = [];
    private float[][] _attentionInputs = [];
    private MemoryReadProbe _read = null!;

    /// <summary>Compute threads (the caller included).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pool = Threads > 1 ? new ComputePool(Threads) : null;
        var rng = new Random(7);
        _gate = Layer(() => Enumerable.Range(0, Experts).Select(e => (WeightMatrix)RandomWeights.Int4($"gate{e}", ExpertWidth, Hidden, rng)).ToArray());
        _up = Layer(() => Enumerable.Range(0, Experts).Select(e => (WeightMatrix)RandomWeights.Int4($"up{e}", ExpertWidth, Hidden, rng)).ToArray());
        _down = Layer(() => Enumerable.Range(0, Experts).Select(e => (WeightMatrix)RandomWeights.Int4($"down{e}", Hidden, ExpertWidth, rng)).ToArray());
        _q4k = Layer(() => [.. Enumerable.Range(0, Experts).SelectMany(e => new WeightMatrix[]
        {
            RandomWeights.Q4K($"gate{e}", ExpertWidth, Hidden, rng), RandomWeights.Q4K($"up{e}", ExpertWidth, Hidden, rng), RandomWeights.Q4K($"down{e}", Hidden, ExpertWidth, rng),
        })]);
        _q4km = Layer(() => [.. Enumerable.Range(0, Experts).SelectMany(e => new WeightMatrix[]
        {
            RandomWeights.Q4K($"gate{e}", ExpertWidth, Hidden, rng), RandomWeights.Q4K($"up{e}", ExpertWidth, Hidden, rng), RandomWeights.Q6K($"down{e}", Hidden, ExpertWidth, rng),
        })]);
        _attention = Layer(() =>
        [
            RandomWeights.Int8("q_a", 1536, Hidden, rng), RandomWeights.Int8("q_b", 24576, 1536, rng), RandomWeights.Int8("kv_a", 576, Hidden, rng),
            RandomWeights.Int8("kv_b", 32768, 512, rng), RandomWeights.Int8("o", Hidden, 16384, rng),
        ]);
        foreach (WeightMatrix m in _gate.Concat(_up).Concat(_down).Concat(_q4k).Concat(_q4km).Concat(_attention).SelectMany(layer => layer))
            m.Pool = _pool;
        _attentionInputs = _attention[0].Select(m => RandomWeights.Activations(m.Cols, rng)).ToArray();
        _x = RandomWeights.Activations(Hidden, rng);
        _h = RandomWeights.Activations(ExpertWidth, rng);
        _out = new float[32768];
        _read = new MemoryReadProbe(_pool);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _read.Dispose();
        _pool?.Dispose();
    }

    private static WeightMatrix[][] Layer(Func<WeightMatrix[]> make) => Enumerable.Range(0, Layers).Select(_ => make()).ToArray();

    // The next layer's weights.
    private int NextLayer() => _layer = (_layer + 1) % Layers;

    /// <summary>Sums 1 GiB of floats: the read bandwidth the kernels are measured against.</summary>
    [Benchmark(Baseline = true)]
    public float ReadBandwidth() => _read.Read();

    /// <summary>One token through the 8 routed experts of one MoE layer.</summary>
    [Benchmark]
    public float MoeLayerInt4()
    {
        int layer = NextLayer();
        for (int e = 0; e < Experts; e++)
        {
            _gate[layer][e].Multiply(_x, _out, 1);
            _up[layer][e].Multiply(_x, _out, 1);
            _down[layer][e].Multiply(_h, _out, 1);
        }
        return _out[0];
    }

    /// <summary>One token through 8 routed experts in Q4_K (gate, up and down of each in turn).</summary>
    [Benchmark]
    public float MoeLayerQ4K() => Experts3(_q4k[NextLayer()]);

    /// <summary>One token through 8 routed experts of a Q4_K_M file's mix: gate and up in Q4_K, down in Q6_K.</summary>
    [Benchmark]
    public float MoeLayerQ4KM() => Experts3(_q4km[NextLayer()]);

    // Gate, up and down of each expert in turn, as [gate0, up0, down0, gate1, ...].
    private float Experts3(WeightMatrix[] experts)
    {
        for (int e = 0; e < Experts; e++)
        {
            experts[3 * e].Multiply(_x, _out, 1);
            experts[3 * e + 1].Multiply(_x, _out, 1);
            experts[3 * e + 2].Multiply(_h, _out, 1);
        }
        return _out[0];
    }

    /// <summary>One token through the five MLA projections of one layer.</summary>
    [Benchmark]
    public float AttentionW8A8()
    {
        WeightMatrix[] attention = _attention[NextLayer()];
        for (int i = 0; i < attention.Length; i++)
            attention[i].Multiply(_attentionInputs[i], _out, 1);
        return _out[0];
    }
}
