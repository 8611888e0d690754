using Ftransformers.Model;
using NUnit.Framework;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class MoeRouterTests
{
    // Eight experts in four groups of two; sigmoid scores chosen directly through their logits.
    private static readonly double[] Scores = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.6, 0.5];
    private static float[] Logits => Scores.Select(p => (float)Math.Log(p / (1 - p))).ToArray();

    private static DeepSeekV3Config Config(int groups, int topkGroups, bool normalize = true) => SyntheticModels.Tiny with
    {
        NRoutedExperts = 8, NGroup = groups, TopkGroup = topkGroups, NumExpertsPerTok = 3,
        RoutedScalingFactor = 2.5, NormTopkProb = normalize,
    };

    private static (int[] Experts, float[] Weights) Route(MoeRouter router)
    {
        var experts = new int[3];
        var weights = new float[3];
        router.Route(Logits, experts, weights);
        return (experts, weights);
    }

    [Test]
    public void WithBias_GroupsScoreTheirTopTwo_SelectionUsesBias_WeightsDoNot()
    {
        // Biased: [.9 .1 .8 .7 .2 .3 .6 1.0]; group top-2 sums 1.0, 1.5, 0.5, 1.6 keep groups 3 and 1,
        // so expert 0 (0.9) is out; the top three are 7, 2, 3 with unbiased scores .5, .8, .7 (sum 2.0).
        var router = new MoeRouter(Config(4, 2), [0, 0, 0, 0, 0, 0, 0, 0.5f]);
        (int[] experts, float[] weights) = Route(router);
        Assert.That(experts, Is.EqualTo(new[] { 7, 2, 3 }));
        Assert.That(weights, Is.EqualTo(new[] { 0.5f / 2 * 2.5f, 0.8f / 2 * 2.5f, 0.7f / 2 * 2.5f }).Within(1e-6f));
    }

    [Test]
    public void WithoutBias_GroupsScoreTheirMaximum()
    {
        // Group maxima .9, .8, .3, .6 keep groups 0 and 1: experts 0, 2, 3 with sum 2.4.
        var router = new MoeRouter(Config(4, 2), correctionBias: null);
        (int[] experts, float[] weights) = Route(router);
        Assert.That(experts, Is.EqualTo(new[] { 0, 2, 3 }));
        Assert.That(weights, Is.EqualTo(new[] { 0.9f / 2.4f * 2.5f, 0.8f / 2.4f * 2.5f, 0.7f / 2.4f * 2.5f }).Within(1e-6f));
    }

    [Test]
    public void SingleGroup_IsPlainTopK_AndUnnormalizedWeightsAreScaledScores()
    {
        var router = new MoeRouter(Config(1, 1, normalize: false), correctionBias: null);
        (int[] experts, float[] weights) = Route(router);
        Assert.That(experts, Is.EqualTo(new[] { 0, 2, 3 }));
        Assert.That(weights, Is.EqualTo(new[] { 0.9f * 2.5f, 0.8f * 2.5f, 0.7f * 2.5f }).Within(1e-6f));
    }

    [Test]
    public void BiasOfWrongLength_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => new MoeRouter(Config(4, 2), new float[7]));
    }
}
