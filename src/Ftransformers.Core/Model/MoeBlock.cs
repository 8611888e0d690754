using System.Numerics.Tensors;

namespace Ftransformers.Model;

/// <summary>
/// A mixture-of-experts feed-forward block: the router picks experts per token, tokens are grouped by expert so
/// that each chosen expert's weights are read once per step, and the shared experts run on every token.
/// </summary>
internal sealed class MoeBlock(WeightMatrix gate, MoeRouter router, Mlp[] experts, Mlp? shared)
{
    public static MoeBlock Load(WeightLoader weights, DeepSeekV3Config config, int layer)
    {
        string prefix = $"model.layers.{layer}.mlp";
        int hidden = config.HiddenSize;
        string biasName = prefix + ".gate.e_score_correction_bias";
        float[]? bias = weights.Contains(biasName) ? weights.Vector(biasName, config.NRoutedExperts) : null;
        var experts = new Mlp[config.NRoutedExperts];
        for (int e = 0; e < experts.Length; e++)
            experts[e] = Mlp.Load(weights, $"{prefix}.experts.{e}", hidden, config.MoeIntermediateSize, weights.Precision.RoutedExperts);
        Mlp? shared = config.NSharedExperts > 0
            ? Mlp.Load(weights, prefix + ".shared_experts", hidden, config.MoeIntermediateSize * config.NSharedExperts, weights.Precision.SharedExperts)
            : null;
        return new MoeBlock(weights.Matrix(prefix + ".gate.weight", config.NRoutedExperts, hidden), new MoeRouter(config, bias), experts, shared);
    }

    /// <summary>y[t] = shared(x[t]) + sum over chosen experts e of weight_e * expert_e(x[t]).</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        int hidden = gate.Cols, k = router.TopK;
        using var logitsBuffer = new PooledBuffer<float>(tokens * experts.Length);
        using var chosenBuffer = new PooledBuffer<int>(tokens * k);
        using var weightsBuffer = new PooledBuffer<float>(tokens * k);
        Span<float> logits = logitsBuffer.Span, weights = weightsBuffer.Span;
        Span<int> chosen = chosenBuffer.Span;
        gate.Multiply(x, logits, tokens);
        for (int t = 0; t < tokens; t++)
            router.Route(logits.Slice(t * experts.Length, experts.Length), chosen.Slice(t * k, k), weights.Slice(t * k, k));

        // Routed contributions are summed in expert order, then the shared expert is added, as the reference does.
        using var routedBuffer = new PooledBuffer<float>(tokens * hidden);
        using var slotsBuffer = new PooledBuffer<int>(tokens * k);
        using var inputBuffer = new PooledBuffer<float>(tokens * hidden);
        using var outputBuffer = new PooledBuffer<float>(tokens * hidden);
        Span<float> routed = routedBuffer.Span;
        routed.Clear();
        Span<int> slots = slotsBuffer.Span;
        for (int e = 0; e < experts.Length; e++)
        {
            // The (token, choice) slots that picked expert e; a token picks an expert at most once.
            int count = 0;
            for (int s = 0; s < chosen.Length; s++)
                if (chosen[s] == e)
                    slots[count++] = s;
            if (count == 0)
                continue;
            Span<float> input = inputBuffer.Span[..(count * hidden)], output = outputBuffer.Span[..(count * hidden)];
            for (int i = 0; i < count; i++)
                x.Slice(slots[i] / k * hidden, hidden).CopyTo(input.Slice(i * hidden, hidden));
            experts[e].Forward(input, output, count);
            for (int i = 0; i < count; i++)
            {
                Span<float> target = routed.Slice(slots[i] / k * hidden, hidden);
                TensorPrimitives.MultiplyAdd(output.Slice(i * hidden, hidden), weights[slots[i]], target, target);
            }
        }
        if (shared is null)
        {
            routed.CopyTo(y);
            return;
        }
        shared.Forward(x, y, tokens);
        TensorPrimitives.Add(routed, y[..routed.Length], y);
    }
}
