using System.Diagnostics;
using Ftransformers.Model;

namespace Ftransformers.Inference;

/// <summary>
/// Wall time of a model's decode steps by part (embedding and lm_head, attention, dense MLP, MoE), so that the time
/// of a deeper model of the same widths can be projected from a shallow one. Only steps in which every sequence
/// decodes one token are counted; prefill and mixed steps are not. Pass one in
/// <see cref="ModelLoadOptions.Profile"/>; without it the model times nothing. Thread-safe.
/// </summary>
public sealed class ForwardProfile
{
    private readonly Lock _lock = new();
    private long _steps, _sequences, _head, _attention, _denseMlp, _moe;
    private int _denseLayers, _moeLayers;

    /// <summary>Forgets what was counted (e.g. between benchmark levels).</summary>
    public void Reset()
    {
        lock (_lock)
            _steps = _sequences = _head = _attention = _denseMlp = _moe = 0;
    }

    /// <summary>What was counted since the last <see cref="Reset"/>.</summary>
    public ForwardProfileSnapshot Snapshot()
    {
        lock (_lock)
            return new ForwardProfileSnapshot(_steps, _sequences, _denseLayers, _moeLayers,
                Stopwatch.GetElapsedTime(0, _head), Stopwatch.GetElapsedTime(0, _attention), Stopwatch.GetElapsedTime(0, _denseMlp), Stopwatch.GetElapsedTime(0, _moe));
    }

    /// <summary>Adds one decode step; times are <see cref="Stopwatch"/> ticks summed over the step's layers.</summary>
    internal void AddDecodeStep(int sequences, int denseLayers, int moeLayers, long head, long attention, long denseMlp, long moe)
    {
        lock (_lock)
        {
            _steps++;
            _sequences += sequences;
            (_denseLayers, _moeLayers) = (denseLayers, moeLayers);
            _head += head;
            _attention += attention;
            _denseMlp += denseMlp;
            _moe += moe;
        }
    }
}

/// <summary>Decode steps counted by a <see cref="ForwardProfile"/>, with their total time by part.</summary>
/// <param name="Steps">Decode steps.</param>
/// <param name="Sequences">Tokens decoded over those steps (one per sequence and step).</param>
/// <param name="DenseLayers">Dense layers of the profiled model.</param>
/// <param name="MoeLayers">MoE layers of the profiled model.</param>
/// <param name="Head">Embedding lookup, final norm and lm_head.</param>
/// <param name="Attention">Attention of every layer, its norm and residual included.</param>
/// <param name="DenseMlp">Dense MLP of every dense layer, its norm and residual included.</param>
/// <param name="Moe">Router, routed and shared experts of every MoE layer, norm and residual included.</param>
public sealed record ForwardProfileSnapshot(long Steps, long Sequences, int DenseLayers, int MoeLayers, TimeSpan Head, TimeSpan Attention, TimeSpan DenseMlp, TimeSpan Moe)
{
    /// <summary>DeepSeek-V3's dense layers.</summary>
    public const int DeepSeekV3DenseLayers = 3;
    /// <summary>DeepSeek-V3's MoE layers.</summary>
    public const int DeepSeekV3MoeLayers = 58;

    /// <summary>Mean sequences per step.</summary>
    public double MeanBatch => Steps == 0 ? 0 : (double)Sequences / Steps;
    /// <summary>Mean time of a step.</summary>
    public TimeSpan StepTime => Per(Head + Attention + DenseMlp + Moe, 1);
    /// <summary>Mean time of embedding and lm_head per step.</summary>
    public TimeSpan HeadPerStep => Per(Head, 1);
    /// <summary>Mean time of one layer's attention per step.</summary>
    public TimeSpan AttentionPerLayer => Per(Attention, DenseLayers + MoeLayers);
    /// <summary>Mean time of one dense MLP per step.</summary>
    public TimeSpan DenseMlpPerLayer => Per(DenseMlp, DenseLayers);
    /// <summary>Mean time of one MoE block per step.</summary>
    public TimeSpan MoePerLayer => Per(Moe, MoeLayers);

    /// <summary>
    /// The step time of a model of the same widths with <paramref name="denseLayers"/> dense and
    /// <paramref name="moeLayers"/> MoE layers: head + dense x (attention + dense MLP) + moe x (attention + MoE).
    /// Null when nothing was counted, or a part to project was not measured.
    /// </summary>
    public TimeSpan? ProjectStep(int denseLayers = DeepSeekV3DenseLayers, int moeLayers = DeepSeekV3MoeLayers)
    {
        if (Steps == 0 || (denseLayers > 0 && DenseLayers == 0) || (moeLayers > 0 && MoeLayers == 0))
            return null;
        return HeadPerStep + denseLayers * (AttentionPerLayer + DenseMlpPerLayer) + moeLayers * (AttentionPerLayer + MoePerLayer);
    }

    private TimeSpan Per(TimeSpan total, int layers) => Steps == 0 || layers == 0 ? TimeSpan.Zero : total / ((double)Steps * layers);
}
