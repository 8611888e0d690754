namespace Ftransformers.Tokenization;

/// <summary>The outcome of <see cref="TokenizerVerifier.Verify"/>.</summary>
/// <param name="Cases">How many encoding cases the golden file holds.</param>
/// <param name="Mismatches">How many of them gave other ids or other decoded text.</param>
/// <param name="ChatTemplateMatch">Whether the golden conversation rendered to the golden text and encoded to the golden ids.</param>
/// <param name="MismatchDescriptions">One line per difference found, naming the case.</param>
public sealed record TokenizerVerificationResult(
    int Cases,
    int Mismatches,
    bool ChatTemplateMatch,
    IReadOnlyList<string> MismatchDescriptions)
{
    /// <summary>True when every case and the chat template matched.</summary>
    public bool Pass => Mismatches == 0 && ChatTemplateMatch;
}
