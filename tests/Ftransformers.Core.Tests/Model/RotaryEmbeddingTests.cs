using Ftransformers.Model;
using NUnit.Framework;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class RotaryEmbeddingTests
{
    [Test]
    public void WithoutScaling_FrequenciesAreThetaPowers()
    {
        var rope = new RotaryEmbedding(4, 10000, scaling: null);
        Assert.That(rope.InverseFrequencies.ToArray(), Is.EqualTo(new[] { 1f, 0.01f }).Within(1e-9f));
    }

    [Test]
    public void Yarn_KeepsFastDimensions_AndDividesSlowOnesByTheFactor()
    {
        // dim 4, theta 1e4, original context 64: correction dims are -0.249 (beta_fast 32) and 0.504 (beta_slow 1),
        // so low = 0, high = 1: pair 0 keeps frequency 1, pair 1 becomes 0.01 / 4.
        var rope = new RotaryEmbedding(4, 10000, new RopeScaling(4, 64, 32, 1, 1, 1));
        Assert.That(rope.InverseFrequencies.ToArray(), Is.EqualTo(new[] { 1f, 0.0025f }).Within(1e-9f));
    }

    [Test]
    public void Yarn_BlendsTheBandBetweenCorrectionDims()
    {
        // dim 16, theta 1e4, original context 64: low = floor(-0.994) -> 0, high = ceil(2.016) = 3;
        // pair 1 has ramp 1/3: f/4 * 1/3 + f * 2/3.
        var rope = new RotaryEmbedding(16, 10000, new RopeScaling(4, 64));
        double f1 = Math.Pow(10000, -2.0 / 16);
        Assert.That(rope.InverseFrequencies[1], Is.EqualTo(f1 / 4 / 3 + f1 * 2 / 3).Within(1e-7));
        double f5 = Math.Pow(10000, -10.0 / 16);
        Assert.That(rope.InverseFrequencies[5], Is.EqualTo(f5 / 4).Within(1e-9));
    }

    [Test]
    public void Apply_RotatesEachPairByPositionTimesFrequency()
    {
        var rope = new RotaryEmbedding(4, 10000, new RopeScaling(4, 64, 32, 1, 1, 1));
        float[] x = [1, 0, 0, 1];
        rope.Apply(x, position: 3);
        Assert.That(x, Is.EqualTo(new[] { (float)Math.Cos(3), (float)Math.Sin(3), (float)-Math.Sin(0.0075), (float)Math.Cos(0.0075) }).Within(1e-6f));
    }

    [Test]
    public void Yarn_MscaleRatio_ScalesCosAndSin()
    {
        // mscale 0.707 vs mscale_all_dim 1 at factor 40: (0.0707 ln 40 + 1) / (0.1 ln 40 + 1).
        var rope = new RotaryEmbedding(4, 10000, new RopeScaling(40, 64, 32, 1, 0.707, 1));
        var cos = new float[2];
        var sin = new float[2];
        rope.Angles(0, cos, sin);
        double ratio = (0.0707 * Math.Log(40) + 1) / (0.1 * Math.Log(40) + 1);
        Assert.That(cos[0], Is.EqualTo(ratio).Within(1e-6));
    }

    [Test]
    public void SoftmaxScale_IncludesYarnMscaleSquared()
    {
        DeepSeekV3Config config = SyntheticModels.Tiny; // qk head 48, factor 4, mscale_all_dim 1
        double m = 0.1 * Math.Log(4) + 1;
        Assert.That(config.SoftmaxScale, Is.EqualTo(m * m / Math.Sqrt(48)).Within(1e-12));
        Assert.That((config with { RopeScaling = null }).SoftmaxScale, Is.EqualTo(1 / Math.Sqrt(48)).Within(1e-12));
    }
}
