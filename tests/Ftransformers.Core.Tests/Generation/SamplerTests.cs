using Ftransformers.Generation;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation;

[TestFixture]
public class SamplerTests
{
    private static readonly float[] Logits = [1.0f, 3.0f, 2.5f, -1.0f, 0.0f];

    private static int[] Draw(SamplingOptions options, int count)
    {
        var sampler = new Sampler(options);
        return Enumerable.Range(0, count).Select(_ => sampler.Next(Logits)).ToArray();
    }

    [Test]
    public void ZeroTemperature_IsArgmax()
    {
        Assert.That(Draw(SamplingOptions.Greedy, 20), Is.All.EqualTo(1));
    }

    [Test]
    public void TopKOfOne_IsArgmax()
    {
        Assert.That(Draw(new SamplingOptions { TopK = 1, Seed = 3 }, 20), Is.All.EqualTo(1));
    }

    [Test]
    public void SameSeed_GivesSameDraws_OtherSeedsDiffer()
    {
        int[] a = Draw(new SamplingOptions { Seed = 42 }, 200);
        Assert.That(Draw(new SamplingOptions { Seed = 42 }, 200), Is.EqualTo(a));
        Assert.That(Draw(new SamplingOptions { Seed = 43 }, 200), Is.Not.EqualTo(a));
    }

    [Test]
    public void TopK_DrawsOnlyFromTheKMostLikely()
    {
        Assert.That(Draw(new SamplingOptions { TopK = 2, Seed = 1 }, 500).Distinct(), Is.EquivalentTo(new[] { 1, 2 }));
    }

    [Test]
    public void TopP_KeepsTheSmallestSetReachingTheMass()
    {
        // softmax: token 1 has 0.52, token 2 0.32: top_p 0.8 needs both, top_p 0.5 only token 1.
        Assert.That(Draw(new SamplingOptions { TopP = 0.8f, Seed = 1 }, 500).Distinct(), Is.EquivalentTo(new[] { 1, 2 }));
        Assert.That(Draw(new SamplingOptions { TopP = 0.5f, Seed = 1 }, 100), Is.All.EqualTo(1));
    }

    [Test]
    public void MinP_DropsTokensBelowTheFractionOfTheTop()
    {
        // p(token 0) / p(token 1) = e^-2 = 0.135: min_p 0.2 drops it and the rarer ones.
        Assert.That(Draw(new SamplingOptions { MinP = 0.2f, Seed = 1 }, 500).Distinct(), Is.EquivalentTo(new[] { 1, 2 }));
    }

    [Test]
    public void Temperature_SharpensOrFlattensTheDistribution()
    {
        double Frequency(float t) => Draw(new SamplingOptions { Temperature = t, Seed = 5 }, 4000).Count(x => x == 1) / 4000.0;
        double expected = Math.Exp(3) / Logits.Sum(l => Math.Exp(l));
        Assert.That(Frequency(1), Is.EqualTo(expected).Within(0.03));
        Assert.That(Frequency(0.25f), Is.GreaterThan(0.85));
    }

    [TestCase(-1f, 1f, 0, 0f)]
    [TestCase(1f, 0f, 0, 0f)]
    [TestCase(1f, 1.5f, 0, 0f)]
    [TestCase(1f, 1f, -2, 0f)]
    [TestCase(1f, 1f, 0, 2f)]
    [TestCase(float.NaN, 1f, 0, 0f)]
    public void OutOfRangeOptions_AreRejected(float temperature, float topP, int topK, float minP)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplingOptions { Temperature = temperature, TopP = topP, TopK = topK, MinP = minP }));
    }
}
