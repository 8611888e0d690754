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

    // The fixture's experts have 128 columns, not whole Q4_K blocks of 256: the preset says so instead of loading.
    [Test]
    public void W8A8Q4K_RefusesMatricesNarrowerThanAQ4KBlock_NamingTheTensor()
    {
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Model.Load(Fixtures.TinyV3, new ModelLoadOptions { Precision = Precision.W8A8Q4K }).Dispose());
        Assert.That(e!.Message, Does.Contain("experts").And.Contain("multiple of 256"));
    }

    // On a model of Q4_K widths, against its F32 logits: Q4_K experts (4.5 bits a weight) stay near INT4 g32's (5 bits).
    [Test]
    public void W8A8Q4K_OnQ4KWidths_StaysNearW8A8Int4()
    {
        DeepSeekV3Config config = SyntheticModels.Tiny with { HiddenSize = 256, MoeIntermediateSize = 256 };
        int[] tokens = [.. Enumerable.Range(0, 32).Select(i => (i * 53 + 11) % config.VocabSize)];
        float[] Logits(Precision precision)
        {
            // The model owns its checkpoint: the same seed makes the same weights for each.
            using DeepSeekV3Model model = DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 5), new ModelLoadOptions { Precision = precision, CpuThreads = 1 });
            return model.Forward(tokens, new SequenceKvCache(config), allPositions: true);
        }
        float[] f32 = Logits(Precision.F32);
        LogitComparison Compare(Precision precision)
        {
            float[] logits = Logits(precision);
            var c = new LogitComparison();
            for (int t = 0; t < tokens.Length; t++)
                c.Add(logits.AsSpan(t * config.VocabSize, config.VocabSize), f32.AsSpan(t * config.VocabSize, config.VocabSize));
            TestContext.Out.WriteLine($"{precision.Describe()}: mean KL {c.MeanKl:G3}, top-1 {c.Top1Agreement:P1}");
            return c;
        }
        LogitComparison q4k = Compare(Precision.W8A8Q4K), int4 = Compare(Precision.W8A8Int4);
        Assert.That(q4k.MeanKl, Is.LessThanOrEqualTo(1.5 * int4.MeanKl));
    }
}
