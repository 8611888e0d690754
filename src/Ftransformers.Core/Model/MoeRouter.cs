using System.Numerics.Tensors;

namespace Ftransformers.Model;

/// <summary>
/// DeepSeek-V3's expert selection for one token, as the reference computes it: scores = sigmoid (or softmax) of
/// the router logits; selection uses scores + <c>e_score_correction_bias</c>; with groups, a group scores the sum
/// of its top-2 biased scores (its maximum without a bias) and only the best <c>topk_group</c> groups compete;
/// the top-k experts' weights are their unbiased scores, normalized to sum to one, times
/// <c>routed_scaling_factor</c>.
/// </summary>
public sealed class MoeRouter
{
    private readonly int _experts, _groups, _topkGroups, _topk;
    private readonly bool _sigmoid, _normalize;
    private readonly float _scale;
    private readonly float[]? _correctionBias;

    /// <summary>Creates the router of a MoE layer; <paramref name="correctionBias"/> may be null.</summary>
    public MoeRouter(DeepSeekV3Config config, float[]? correctionBias)
    {
        _experts = config.NRoutedExperts;
        _groups = config.NGroup;
        _topkGroups = config.TopkGroup;
        _topk = config.NumExpertsPerTok;
        _sigmoid = config.ScoringFunc == "sigmoid";
        _normalize = config.NormTopkProb;
        _scale = (float)config.RoutedScalingFactor;
        if (correctionBias != null && correctionBias.Length != _experts)
            throw new ArgumentException($"e_score_correction_bias has {correctionBias.Length} values, expected n_routed_experts = {_experts}.", nameof(correctionBias));
        _correctionBias = correctionBias;
    }

    /// <summary>Experts chosen per token.</summary>
    public int TopK => _topk;

    /// <summary>
    /// Chooses <see cref="TopK"/> experts from one token's router logits; writes their indices (best first) and weights.
    /// </summary>
    public void Route(ReadOnlySpan<float> logits, Span<int> experts, Span<float> weights)
    {
        if (logits.Length != _experts || experts.Length < _topk || weights.Length < _topk)
            throw new ArgumentException($"Routing needs {_experts} logits and room for {_topk} experts.");
        Span<float> scores = stackalloc float[_experts];
        if (_sigmoid)
            TensorPrimitives.Sigmoid(logits, scores);
        else
            TensorPrimitives.SoftMax(logits, scores);

        Span<float> choice = stackalloc float[_experts];
        scores.CopyTo(choice);
        if (_correctionBias != null)
            TensorPrimitives.Add(choice, _correctionBias, choice);
        if (_groups > 1)
            MaskWeakGroups(choice);

        // Top-k by selection score; earlier index wins ties, as torch.topk does in practice.
        for (int k = 0; k < _topk; k++)
        {
            int best = -1;
            for (int e = 0; e < _experts; e++)
                if (!float.IsNegativeInfinity(choice[e]) && (best < 0 || choice[e] > choice[best]))
                    best = e;
            experts[k] = best;
            weights[k] = scores[best];
            choice[best] = float.NegativeInfinity;
        }

        Span<float> chosen = weights[.._topk];
        if (_normalize && _topk > 1)
            TensorPrimitives.Divide(chosen, TensorPrimitives.Sum(chosen), chosen);
        TensorPrimitives.Multiply(chosen, _scale, chosen);
    }

    private void MaskWeakGroups(Span<float> choice)
    {
        int perGroup = _experts / _groups;
        Span<float> groupScores = stackalloc float[_groups];
        for (int g = 0; g < _groups; g++)
        {
            ReadOnlySpan<float> group = choice.Slice(g * perGroup, perGroup);
            if (_correctionBias == null)
            {
                groupScores[g] = TensorPrimitives.Max(group);
                continue;
            }
            float first = float.NegativeInfinity, second = float.NegativeInfinity;
            foreach (float s in group)
            {
                if (s > first) { second = first; first = s; }
                else if (s > second) second = s;
            }
            groupScores[g] = first + second;
        }
        Span<bool> keep = stackalloc bool[_groups];
        for (int k = 0; k < _topkGroups; k++)
        {
            int best = -1;
            for (int g = 0; g < _groups; g++)
                if (!keep[g] && (best < 0 || groupScores[g] > groupScores[best]))
                    best = g;
            keep[best] = true;
        }
        for (int g = 0; g < _groups; g++)
            if (!keep[g])
                choice.Slice(g * perGroup, perGroup).Fill(float.NegativeInfinity);
    }
}
