using System.Runtime.InteropServices;
using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Serving;

/// <summary>
/// Turns a scheduled step into one forward pass of the model over the paged KV cache (<paramref name="kv"/>, addressed
/// through <paramref name="pool"/>'s pages): every sequence's tokens, its positions and page table, and one logits row
/// per sequence whose step reaches its last token.
/// </summary>
internal sealed class ModelRunner(DeepSeekV3Model model, KvCachePool pool, ILatentStore kv)
{
    private readonly ForwardBatch _batch = new();
    private float[] _logits = [];

    /// <summary>Times the steps' parts; the engine loop begins a step before scheduling and ends it after sampling.</summary>
    public StepTrace Trace => model.Trace;

    /// <summary>Values per logits row.</summary>
    public int VocabSize => model.Config.VocabSize;

    /// <summary>
    /// Runs the step; the returned rows follow the order of the sampling entries of <paramref name="step"/> and stay
    /// valid until the next call.
    /// </summary>
    public ReadOnlySpan<float> Run(IReadOnlyList<ScheduledSequence> step, CancellationToken cancellationToken)
    {
        _batch.Clear(pool.PageSize);
        foreach (ScheduledSequence entry in step)
        {
            Sequence sequence = entry.Sequence;
            ReadOnlySpan<int> tokens = CollectionsMarshal.AsSpan(sequence.Tokens).Slice(sequence.ComputedTokens, entry.Count);
            _batch.AddSequence(tokens, sequence.ComputedTokens, sequence.PageTable, logits: entry.Samples);
        }
        int values = _batch.LogitCount * model.Config.VocabSize;
        if (_logits.Length < values)
            _logits = new float[Math.Max(values, 2 * _logits.Length)];
        model.Forward(_batch, kv, _logits.AsSpan(0, values), cancellationToken);
        return _logits.AsSpan(0, values);
    }
}
