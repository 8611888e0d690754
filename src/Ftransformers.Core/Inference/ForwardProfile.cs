using System.Diagnostics;
using Ftransformers.Backends;
using Ftransformers.Model;

namespace Ftransformers.Inference;

/// <summary>What a step computes: every sequence decoding one token, or at least one prompt chunk (with or without decode tokens beside it).</summary>
public enum StepKind
{
    /// <summary>Every sequence of the step decodes one token.</summary>
    Decode,
    /// <summary>The step prefills prompt tokens (decode tokens may ride along).</summary>
    Prefill,
}

/// <summary>
/// Accumulates where steps spend their time: per step kind, layer and <see cref="ModelPart"/>, the wall time, the weight
/// and KV cache bytes read and the multiply-adds, so that achieved bandwidth and compute can be judged against the
/// machine's. Pass one in <see cref="ModelLoadOptions.Profile"/>; without it nothing is counted. Thread-safe.
/// </summary>
public sealed class ForwardProfile
{
    private const int Kinds = 2;
    private static readonly int Parts = Enum.GetValues<ModelPart>().Length;

    private readonly Lock _lock = new();
    private readonly long[] _steps = new long[Kinds], _tokens = new long[Kinds], _sequences = new long[Kinds];
    // [kind, slot, part]; slot 0 holds the parts outside layers, slot 1 + i layer i.
    private long[] _ticks = [], _weightBytes = [], _cacheBytes = [], _multiplyAdds = [];
    private int _layers, _denseLayers;
    private Precision _precision = Precision.F32;

    /// <summary>
    /// Sizes the counters for a model of <paramref name="layers"/> layers, <paramref name="denseLayers"/> of them dense,
    /// computing in <paramref name="precision"/> (the model calls it at load).
    /// </summary>
    internal void Configure(int layers, int denseLayers, Precision precision)
    {
        lock (_lock)
        {
            _precision = precision;
            if (_ticks.Length > 0 && (layers, denseLayers) == (_layers, _denseLayers))
                return;
            (_layers, _denseLayers) = (layers, denseLayers);
            int length = Kinds * (layers + 1) * Parts;
            (_ticks, _weightBytes, _cacheBytes, _multiplyAdds) = (new long[length], new long[length], new long[length], new long[length]);
        }
    }

    /// <summary>Forgets what was counted (e.g. between benchmark levels).</summary>
    public void Reset()
    {
        lock (_lock)
            Clear();
    }

    private void Clear()
    {
        Array.Clear(_steps);
        Array.Clear(_tokens);
        Array.Clear(_sequences);
        Array.Clear(_ticks);
        Array.Clear(_weightBytes);
        Array.Clear(_cacheBytes);
        Array.Clear(_multiplyAdds);
    }

    private int Index(StepKind kind, int layer, ModelPart part) => ((int)kind * (_layers + 1) + layer + 1) * Parts + (int)part;

    /// <summary>Adds a part's work in one step; <paramref name="layer"/> is -1 for parts outside the layers.</summary>
    internal void Add(StepKind kind, int layer, ModelPart part, long ticks, long weightBytes, long cacheBytes, long multiplyAdds)
    {
        lock (_lock)
        {
            if (_ticks.Length == 0 || layer >= _layers)
                return;
            int i = Index(kind, layer, part);
            _ticks[i] += ticks;
            _weightBytes[i] += weightBytes;
            _cacheBytes[i] += cacheBytes;
            _multiplyAdds[i] += multiplyAdds;
        }
    }

    /// <summary>Counts one step of <paramref name="tokens"/> tokens over <paramref name="sequences"/> sequences.</summary>
    internal void AddStep(StepKind kind, int tokens, int sequences)
    {
        lock (_lock)
        {
            _steps[(int)kind]++;
            _tokens[(int)kind] += tokens;
            _sequences[(int)kind] += sequences;
        }
    }

    /// <summary>What was counted since the last reset; with <paramref name="reset"/>, forgets it in the same breath (no step falls between).</summary>
    public ForwardProfileSnapshot Snapshot(bool reset = false)
    {
        lock (_lock)
        {
            ForwardProfileSnapshot snapshot = Take();
            if (reset)
                Clear();
            return snapshot;
        }
    }

    private ForwardProfileSnapshot Take()
    {
        var kinds = new StepProfile[Kinds];
        for (int k = 0; k < Kinds; k++)
        {
            var parts = new List<PartTime>();
            for (int layer = -1; layer < _layers && _ticks.Length > 0; layer++)
                foreach (ModelPart part in Enum.GetValues<ModelPart>())
                {
                    int i = Index((StepKind)k, layer, part);
                    if (_ticks[i] != 0 || _weightBytes[i] != 0)
                        parts.Add(new PartTime(layer, part, Stopwatch.GetElapsedTime(0, _ticks[i]), _weightBytes[i], _cacheBytes[i], _multiplyAdds[i]));
                }
            kinds[k] = new StepProfile((StepKind)k, _steps[k], _tokens[k], _sequences[k], parts);
        }
        return new ForwardProfileSnapshot(kinds[0], kinds[1], _denseLayers, _layers - _denseLayers, _precision);
    }
}

/// <summary>A part's totals over the counted steps.</summary>
/// <param name="Layer">The layer, or -1 for a part outside the layers (embedding, head, sampling, scheduling).</param>
/// <param name="Part">The part.</param>
/// <param name="Time">Wall time, summed over steps.</param>
/// <param name="WeightBytes">Weight bytes read, summed over steps.</param>
/// <param name="CacheBytes">KV cache bytes read (attention: each sequence's cached rows once per step), summed over steps.</param>
/// <param name="MultiplyAdds">Multiply-adds, summed over steps.</param>
public sealed record PartTime(int Layer, ModelPart Part, TimeSpan Time, long WeightBytes, long CacheBytes, long MultiplyAdds)
{
    /// <summary>Bytes read, weights and cache.</summary>
    public long Bytes => WeightBytes + CacheBytes;
}

/// <summary>The counted steps of one kind, and their parts.</summary>
/// <param name="Kind">Decode or prefill steps.</param>
/// <param name="Steps">Steps counted.</param>
/// <param name="Tokens">Tokens computed over those steps.</param>
/// <param name="Sequences">Sequences over those steps (a sequence counted once per step).</param>
/// <param name="Parts">Each (layer, part) that took time or read weights.</param>
public sealed record StepProfile(StepKind Kind, long Steps, long Tokens, long Sequences, IReadOnlyList<PartTime> Parts)
{
    /// <summary>A part summed over every layer (layer -1 in the result).</summary>
    public PartTime Total(ModelPart part)
    {
        PartTime[] of = [.. Parts.Where(p => p.Part == part)];
        return new PartTime(-1, part, new TimeSpan(of.Sum(p => p.Time.Ticks)), of.Sum(p => p.WeightBytes), of.Sum(p => p.CacheBytes), of.Sum(p => p.MultiplyAdds));
    }

    /// <summary>Mean wall time of a step: the sum of its parts, less the shared experts (they run inside the routed experts' time).</summary>
    public TimeSpan StepTime => Steps == 0 ? TimeSpan.Zero : new TimeSpan(Parts.Where(p => p.Part != ModelPart.SharedExperts).Sum(p => p.Time.Ticks)) / Steps;
}

/// <summary>What a <see cref="ForwardProfile"/> counted: decode and prefill steps, and the decode step's per-layer times.</summary>
/// <param name="Decode">Steps in which every sequence decodes one token.</param>
/// <param name="Prefill">Steps that prefill prompt tokens.</param>
/// <param name="DenseLayers">Dense layers of the profiled model.</param>
/// <param name="MoeLayers">MoE layers of the profiled model.</param>
/// <param name="Precision">The weight formats the model computes with.</param>
public sealed record ForwardProfileSnapshot(StepProfile Decode, StepProfile Prefill, int DenseLayers, int MoeLayers, Precision Precision)
{
    /// <summary>DeepSeek-V3's dense layers.</summary>
    public const int DeepSeekV3DenseLayers = 3;
    /// <summary>DeepSeek-V3's MoE layers.</summary>
    public const int DeepSeekV3MoeLayers = 58;

    /// <summary>Decode steps.</summary>
    public long Steps => Decode.Steps;
    /// <summary>Mean sequences per decode step.</summary>
    public double MeanBatch => Steps == 0 ? 0 : (double)Decode.Sequences / Steps;
    /// <summary>Mean time of a decode step's forward pass: head + attention + dense MLPs + MoE.</summary>
    public TimeSpan StepTime => HeadPerStep + Per(Sum(ModelPart.Attention) + Sum(ModelPart.DenseMlp) + Sum(ModelPart.Router) + Sum(ModelPart.RoutedExperts), 1);
    /// <summary>Mean time of the embedding lookup, final norm and lm_head per decode step.</summary>
    public TimeSpan HeadPerStep => Per(Sum(ModelPart.Embedding) + Sum(ModelPart.Head), 1);
    /// <summary>Mean time of one layer's attention per decode step.</summary>
    public TimeSpan AttentionPerLayer => Per(Sum(ModelPart.Attention), DenseLayers + MoeLayers);
    /// <summary>Mean time of one dense MLP per decode step.</summary>
    public TimeSpan DenseMlpPerLayer => Per(Sum(ModelPart.DenseMlp), DenseLayers);
    /// <summary>Mean time of one MoE block (router, routed and shared experts) per decode step.</summary>
    public TimeSpan MoePerLayer => Per(Sum(ModelPart.Router) + Sum(ModelPart.RoutedExperts), MoeLayers);

    /// <summary>
    /// The decode step time of a model of the same widths with <paramref name="denseLayers"/> dense and
    /// <paramref name="moeLayers"/> MoE layers: head + dense x (attention + dense MLP) + moe x (attention + MoE).
    /// Null when nothing was counted, or a part to project was not measured.
    /// </summary>
    public TimeSpan? ProjectStep(int denseLayers = DeepSeekV3DenseLayers, int moeLayers = DeepSeekV3MoeLayers)
    {
        if (Steps == 0 || (denseLayers > 0 && DenseLayers == 0) || (moeLayers > 0 && MoeLayers == 0))
            return null;
        return HeadPerStep + denseLayers * (AttentionPerLayer + DenseMlpPerLayer) + moeLayers * (AttentionPerLayer + MoePerLayer);
    }

    private TimeSpan Sum(ModelPart part) => Decode.Total(part).Time;

    private TimeSpan Per(TimeSpan total, int layers) => Steps == 0 || layers == 0 ? TimeSpan.Zero : total / ((double)Steps * layers);
}
