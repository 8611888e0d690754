using Ftransformers.Generation;
using Ftransformers.Model;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Serving;

/// <summary>Reference runs of one request alone, and the comparisons the serving tests make against them.</summary>
internal static class Exactness
{
    /// <summary>The bound of the serving exactness checks: per-row relative error of the logits.</summary>
    public const double RelativeBound = 1e-5;

    /// <summary>A request run alone on a contiguous cache: one full prefill, then one token per step.</summary>
    public static (int[] Tokens, List<float[]> Logits) Solo(DeepSeekV3Model model, IReadOnlyList<int> prompt, int maxTokens, SamplingOptions sampling)
    {
        var cache = new SequenceKvCache(model.Config);
        var sampler = new Sampler(sampling);
        var tokens = new List<int>();
        var rows = new List<float[]>();
        float[] logits = model.Forward(prompt.ToArray(), cache);
        while (true)
        {
            rows.Add(logits);
            tokens.Add(sampler.Next(logits));
            if (tokens.Count == maxTokens)
                return ([.. tokens], rows);
            logits = model.Forward([tokens[^1]], cache);
        }
    }

    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = actual[i] - expected[i];
            diff += d * d;
            norm += (double)expected[i] * expected[i];
        }
        return Math.Sqrt(diff / Math.Max(norm, 1e-30));
    }

    public static void AssertRowsMatch(IReadOnlyList<float[]> actual, IReadOnlyList<float[]> expected, string what)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count), what);
        for (int i = 0; i < expected.Count; i++)
            Assert.That(RelativeError(actual[i], expected[i]), Is.LessThanOrEqualTo(RelativeBound), $"{what}, row {i}");
    }
}
