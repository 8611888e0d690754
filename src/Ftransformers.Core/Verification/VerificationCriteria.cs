using Ftransformers.Model;

namespace Ftransformers.Verification;

/// <summary>
/// What a verification run must meet: per-row relative error and identical greedy tokens for exact and BF16
/// weights; for quantized weights, the mean KL(reference ‖ ours) and top-1 agreement pooled over every row.
/// </summary>
/// <param name="MaxRelativeError">Worst allowed per-row relative error; null checks none.</param>
/// <param name="RequireGreedyMatch">Every greedy token must equal the reference's.</param>
/// <param name="MaxMeanKl">Largest allowed pooled mean KL; null checks none.</param>
/// <param name="MinTop1Agreement">Smallest allowed pooled top-1 agreement; null checks none.</param>
public sealed record VerificationCriteria(double? MaxRelativeError, bool RequireGreedyMatch, double? MaxMeanKl, double? MinTop1Agreement)
{
    /// <summary>F32 over the stored weights: 1e-4 per row, greedy tokens identical.</summary>
    public static VerificationCriteria Exact { get; } = new(ModelVerifier.ExactRelativeErrorBound, true, null, null);

    /// <summary>The criteria for a precision: exact for F32, 1e-2 per row for BF16, KL ≤ 0.02 and top-1 ≥ 0.80 once quantized.</summary>
    public static VerificationCriteria For(Precision precision) =>
        precision.IsQuantized ? new(null, false, 0.02, 0.80)
        : precision == Precision.F32 ? Exact
        : new(1e-2, false, null, null);

    /// <summary>Whether the results meet the criteria.</summary>
    public bool IsMet(IReadOnlyList<PromptVerification> results)
    {
        int rows = results.Sum(r => r.Rows);
        double meanKl = results.Sum(r => r.MeanKl * r.Rows) / rows;
        double top1 = results.Sum(r => r.Top1Agreement * r.Rows) / rows;
        return results.All(r => MaxRelativeError is not { } bound || r.MaxRelativeError <= bound)
            && (!RequireGreedyMatch || results.All(r => r.GreedyMatch))
            && (MaxMeanKl is not { } kl || meanKl <= kl)
            && (MinTop1Agreement is not { } agreement || top1 >= agreement);
    }

    /// <summary>The criteria in words, for reports.</summary>
    public string Describe() => string.Join(", ", new[]
    {
        MaxRelativeError is { } e ? $"every row within {e:0.#E+0} relative error" : null,
        RequireGreedyMatch ? "greedy tokens identical" : null,
        MaxMeanKl is { } k ? $"pooled mean KL <= {k}" : null,
        MinTop1Agreement is { } t ? $"pooled top-1 >= {t}" : null,
    }.OfType<string>());
}
