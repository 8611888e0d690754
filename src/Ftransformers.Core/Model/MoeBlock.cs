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
        var logits = new float[tokens * experts.Length];
        gate.Multiply(x, logits, tokens);
        var chosen = new int[tokens * k];
        var weights = new float[tokens * k];
        for (int t = 0; t < tokens; t++)
            router.Route(logits.AsSpan(t * experts.Length, experts.Length), chosen.AsSpan(t * k, k), weights.AsSpan(t * k, k));

        // Routed contributions are summed in expert order, then the shared expert is added, as the reference does.
        var routed = new float[tokens * hidden];
        var slots = new List<int>(tokens);
        for (int e = 0; e < experts.Length; e++)
        {
            slots.Clear();
            for (int s = 0; s < chosen.Length; s++)
                if (chosen[s] == e)
                    slots.Add(s);
            if (slots.Count == 0)
                continue;
            var input = new float[slots.Count * hidden];
            for (int i = 0; i < slots.Count; i++)
                x.Slice(slots[i] / k * hidden, hidden).CopyTo(input.AsSpan(i * hidden));
            var output = new float[slots.Count * hidden];
            experts[e].Forward(input, output, slots.Count);
            for (int i = 0; i < slots.Count; i++)
            {
                Span<float> target = routed.AsSpan(slots[i] / k * hidden, hidden);
                TensorPrimitives.MultiplyAdd(output.AsSpan(i * hidden, hidden), weights[slots[i]], target, target);
            }
        }
        if (shared is null)
        {
            routed.AsSpan().CopyTo(y);
            return;
        }
        shared.Forward(x, y, tokens);
        TensorPrimitives.Add(routed, y[..routed.Length], y);
    }
}
