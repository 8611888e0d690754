using NUnit.Framework;
using Ftransformers.Model;
using Ftransformers.Verification;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Backends;

/// <summary>Conformance: logits against DeepSeek's reference implementation on the fixtures.</summary>
[TestFixtureSource(typeof(BackendSetup), nameof(BackendSetup.All))]
public class TinyV3ExactnessTests(BackendSetup setup)
{
    private static IEnumerable<TestCaseData> Checkpoints()
    {
        yield return new TestCaseData("tiny-v3").SetName("Bf16Checkpoint_MatchesReference");
        yield return new TestCaseData("tiny-v3-fp8").SetName("Fp8ShardedCheckpoint_MatchesReference");
    }

    [TestCaseSource(nameof(Checkpoints))]
    public void EveryPrefillRowAndDecodeStep_IsWithinBound_AndGreedyTokensMatch(string fixture)
    {
        string dir = fixture == "tiny-v3" ? Fixtures.TinyV3 : Fixtures.TinyV3Fp8;
        using DeepSeekV3Model model = setup.Load(dir);
        var golden = GoldenPrompt.ReadAll(Path.Combine(dir, "golden.safetensors"));
        var results = ModelVerifier.Verify(model, golden);
        Assert.That(results, Has.Count.EqualTo(golden.Count));
        foreach (PromptVerification r in results)
        {
            TestContext.Out.WriteLine($"prompt {r.Index}: max rel {r.MaxRelativeError:E2}, KL {r.MeanKl:E2}, top1 {r.Top1Agreement:P0}, greedy {r.GreedyMatch}");
            Assert.That(r.MaxRelativeError, Is.LessThanOrEqualTo(ModelVerifier.ExactRelativeErrorBound), $"prompt {r.Index}");
            Assert.That(r.GreedyMatch, Is.True, $"prompt {r.Index}");
        }
    }
}
