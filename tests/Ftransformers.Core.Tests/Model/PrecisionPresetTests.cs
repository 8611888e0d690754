using Ftransformers.Model;
using Ftransformers.Verification;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Model;

/// <summary>The precision presets on the reference fixture, against the reference's F32 logits.</summary>
[TestFixture]
public class PrecisionPresetTests
{
    // Every prefill position of every prompt, pooled, as the fixture README's yardstick table measures.
    private static LogitComparison ComparePrefill(string fixture, Precision precision)
    {
        using DeepSeekV3Model model = DeepSeekV3Model.Load(fixture, new ModelLoadOptions { Precision = precision });
        var comparison = new LogitComparison();
        foreach (GoldenPrompt prompt in GoldenPrompt.ReadAll(Path.Combine(fixture, "golden.safetensors")))
        {
            float[] logits = model.Forward(prompt.Tokens, new SequenceKvCache(model.Config), allPositions: true);
            for (int t = 0; t < prompt.Tokens.Length; t++)
                comparison.Add(logits.AsSpan(t * prompt.Vocab, prompt.Vocab), prompt.PrefillLogits.AsSpan(t * prompt.Vocab, prompt.Vocab));
        }
        TestContext.Out.WriteLine($"{precision.Describe()}: rows {comparison.Rows}, mean KL {comparison.MeanKl:F5}, top-1 {comparison.Top1Agreement:F3}, max rel {comparison.MaxRelativeError:E2}");
        return comparison;
    }

    [Test]
    public void W8A8Int4_StaysWithinTheKlAndTop1Bounds()
    {
        LogitComparison c = ComparePrefill(Fixtures.TinyV3, Precision.W8A8Int4);
        Assert.That(c.MeanKl, Is.LessThanOrEqualTo(0.02));
        Assert.That(c.Top1Agreement, Is.GreaterThanOrEqualTo(0.80));
    }

    [Test]
    public void Int4ScaleSearch_LowersTheKlOfRoundToNearest()
    {
        double searched = ComparePrefill(Fixtures.TinyV3, Precision.W8A8Int4).MeanKl;
        double nearest = ComparePrefill(Fixtures.TinyV3, Precision.W8A8Int4 with { SearchInt4Scales = false }).MeanKl;
        Assert.That(searched, Is.LessThan(nearest));
    }

    [TestCase("tiny-v3")]
    [TestCase("tiny-v3-fp8")]
    public void Bf16_StaysWithinOnePercentPerRow(string fixture)
    {
        LogitComparison c = ComparePrefill(fixture == "tiny-v3" ? Fixtures.TinyV3 : Fixtures.TinyV3Fp8, Precision.Bf16);
        Assert.That(c.MaxRelativeError, Is.LessThanOrEqualTo(1e-2));
    }
}
