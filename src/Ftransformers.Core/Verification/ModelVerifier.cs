using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Verification;

/// <summary>How one golden prompt compared.</summary>
/// <param name="Index">The prompt's index in the golden file.</param>
/// <param name="Tokens">Prompt length.</param>
/// <param name="MaxRelativeError">Worst per-row relative error over prefill and decode rows.</param>
/// <param name="GreedyMatch">Whether every greedy token equals the reference's.</param>
/// <param name="MeanKl">Mean KL(reference ‖ ours) over all rows.</param>
/// <param name="Top1Agreement">Fraction of rows whose argmax equals the reference's.</param>
/// <param name="Rows">Rows compared (prefill positions plus decode steps).</param>
public sealed record PromptVerification(int Index, int Tokens, double MaxRelativeError, bool GreedyMatch, double MeanKl, double Top1Agreement, int Rows);

/// <summary>
/// Replays golden prompts through a model the way the reference produced them: one full prefill (logits at every
/// position), then one token per step with the KV cache, feeding the reference's greedy tokens.
/// </summary>
public static class ModelVerifier
{
    /// <summary>The exactness bound of an F32 model: worst per-row relative error.</summary>
    public const double ExactRelativeErrorBound = 1e-4;

    /// <summary>Compares <paramref name="model"/> with every prompt of a golden file.</summary>
    public static IReadOnlyList<PromptVerification> Verify(DeepSeekV3Model model, IReadOnlyList<GoldenPrompt> golden, CancellationToken cancellationToken = default)
    {
        var results = new List<PromptVerification>();
        foreach (GoldenPrompt prompt in golden)
        {
            int vocab = model.Config.VocabSize;
            if (prompt.Vocab != vocab)
                throw new InvalidDataException($"Golden prompt {prompt.Index} has {prompt.Vocab} logits per row but the model's vocabulary is {vocab}.");
            var cache = new SequenceKvCache(model.Config);
            var comparison = new LogitComparison();
            float[] prefill = model.Forward(prompt.Tokens, cache, allPositions: true, cancellationToken);
            for (int t = 0; t < prompt.Tokens.Length; t++)
                comparison.Add(prefill.AsSpan(t * vocab, vocab), prompt.PrefillLogits.AsSpan(t * vocab, vocab));

            bool greedyMatch = Argmax(prefill.AsSpan((prompt.Tokens.Length - 1) * vocab, vocab)) == prompt.GreedyTokens[0];
            for (int k = 0; k < prompt.GreedyTokens.Length; k++)
            {
                float[] logits = model.Forward([prompt.GreedyTokens[k]], cache, cancellationToken: cancellationToken);
                comparison.Add(logits, prompt.DecodeLogits.AsSpan(k * vocab, vocab));
                if (k + 1 < prompt.GreedyTokens.Length && Argmax(logits) != prompt.GreedyTokens[k + 1])
                    greedyMatch = false;
            }
            results.Add(new PromptVerification(prompt.Index, prompt.Tokens.Length, comparison.MaxRelativeError, greedyMatch, comparison.MeanKl, comparison.Top1Agreement, comparison.Rows));
        }
        return results;
    }

    private static int Argmax(ReadOnlySpan<float> row) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
}
