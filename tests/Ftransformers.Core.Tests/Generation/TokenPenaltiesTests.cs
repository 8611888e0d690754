using Ftransformers.Generation;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation;

[TestFixture]
public sealed class TokenPenaltiesTests
{
    [Test]
    public void PenaltiesAndBiasFollowTheirDefinitions()
    {
        var options = new SamplingOptions
        {
            PresencePenalty = 0.5f, FrequencyPenalty = 0.25f, RepetitionPenalty = 2f,
            LogitBias = new Dictionary<int, float> { [1] = -100, [4] = 3 },
        };
        var penalties = new TokenPenalties(options, prompt: [2]);
        foreach (int token in (int[])[0, 0, 3])
            penalties.Add(token);
        float[] logits = [1f, 2f, -1f, 0.5f, 0f];
        penalties.Apply(logits);

        // 0: generated twice, positive: 1 / 2 - 0.5 - 2 * 0.25 = -0.5.   1: bias only: 2 - 100.
        // 2: in the prompt only, negative: -1 * 2.   3: generated once: 0.5 / 2 - 0.5 - 0.25.   4: bias: 0 + 3.
        Assert.That(logits, Is.EqualTo(new[] { -0.5f, -98f, -2f, -0.5f, 3f }).Within(1e-6f));
    }

    [Test]
    public void WithoutPenaltiesTheLogitsAreUntouched()
    {
        Assert.That(new SamplingOptions().AdjustsLogits, Is.False);
        Assert.That(new SamplingOptions { RepetitionPenalty = 1.1f }.AdjustsLogits, Is.True);
    }
}
