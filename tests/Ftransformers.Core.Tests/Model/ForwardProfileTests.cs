using Ftransformers.Model;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class ForwardProfileTests
{
    [Test]
    public void Profile_CountsDecodeStepsOnly_ByPart()
    {
        var profile = new ForwardProfile();
        using var model = DeepSeekV3Model.FromCheckpoint(SyntheticModels.Tiny, SyntheticCheckpoint.CreateInMemory(SyntheticModels.Tiny, seed: 1),
            new ModelLoadOptions { Profile = profile, CpuThreads = 1 });
        var cache = new SequenceKvCache(model.Config);
        model.Forward([0, 5, 9, 14], cache);
        Assert.That(profile.Snapshot().Steps, Is.Zero, "a prefill step is not a decode step");

        model.Forward([7], cache);
        model.Forward([8], cache);
        ForwardProfileSnapshot s = profile.Snapshot();
        Assert.That((s.Steps, s.Sequences, s.DenseLayers, s.MoeLayers), Is.EqualTo((2L, 2L, 1, 2)));
        Assert.That(new[] { s.Head, s.Attention, s.DenseMlp, s.Moe }, Has.All.GreaterThan(TimeSpan.Zero));
        Assert.That(s.ProjectStep(), Is.EqualTo(s.HeadPerStep + 3 * (s.AttentionPerLayer + s.DenseMlpPerLayer) + 58 * (s.AttentionPerLayer + s.MoePerLayer)));
        Assert.That(s.ProjectStep(1, 2)!.Value.TotalMilliseconds, Is.EqualTo(s.StepTime.TotalMilliseconds).Within(1e-3), "at the model's own depth, the measured step");

        profile.Reset();
        Assert.That(profile.Snapshot().Steps, Is.Zero);
        Assert.That(profile.Snapshot().ProjectStep(), Is.Null);
    }
}
