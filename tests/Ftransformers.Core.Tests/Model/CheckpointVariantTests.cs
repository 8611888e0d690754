using System.Text.Json;
using Ftransformers.Cli;
using Ftransformers.Formats;
using Ftransformers.Model;
using Ftransformers.Tests.Support;
using Ftransformers.Verification;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Model;

/// <summary>
/// Checkpoints of other shapes, dtypes and shard layouts than the fixtures: the fixture re-laid out must still
/// match its golden logits, and synthetic architectures must match an independent float64 implementation.
/// </summary>
[TestFixture]
public class CheckpointVariantTests
{
    private static IEnumerable<TestCaseData> Variants()
    {
        // No q LoRA, no YaRN, one group, no shared expert, softmax scoring, unnormalized weights, two dense layers,
        // tied embeddings, odd widths that exercise every vector tail; F32 in three shards.
        yield return new TestCaseData(new DeepSeekV3Config
        {
            VocabSize = 300, HiddenSize = 72, IntermediateSize = 100, MoeIntermediateSize = 36, NumHiddenLayers = 4,
            FirstKDenseReplace = 2, NumAttentionHeads = 3, NRoutedExperts = 8, NSharedExperts = 0, NumExpertsPerTok = 2,
            NGroup = 1, TopkGroup = 1, ScoringFunc = "softmax", NormTopkProb = false, RoutedScalingFactor = 1.0,
            QLoraRank = null, KvLoraRank = 40, QkNopeHeadDim = 24, QkRopeHeadDim = 8, VHeadDim = 20,
            MaxPositionEmbeddings = 128, RopeTheta = 500, RopeScaling = null, TieWordEmbeddings = true, EosTokenIds = [1],
        }, TensorDType.F32, 3).SetName("NoQLora_NoYarn_Softmax_TiedEmbeddings_F32_ThreeShards");

        // Many groups, MoE every second layer, two shared experts, YaRN with mscale != mscale_all_dim; BF16 in two shards.
        yield return new TestCaseData(new DeepSeekV3Config
        {
            VocabSize = 520, HiddenSize = 96, IntermediateSize = 160, MoeIntermediateSize = 24, NumHiddenLayers = 4,
            FirstKDenseReplace = 1, MoeLayerFreq = 2, NumAttentionHeads = 5, NRoutedExperts = 32, NSharedExperts = 2,
            NumExpertsPerTok = 6, NGroup = 8, TopkGroup = 3, RoutedScalingFactor = 1.8, QLoraRank = 48, KvLoraRank = 64,
            QkNopeHeadDim = 16, QkRopeHeadDim = 32, VHeadDim = 16, MaxPositionEmbeddings = 1024, RopeTheta = 10000,
            RopeScaling = new RopeScaling(16, 32, 32, 1, 0.707, 1.0), EosTokenIds = [1, 2],
        }, TensorDType.BF16, 2).SetName("ManyGroups_SparseMoeLayers_TwoSharedExperts_YarnMscaleRatio_Bf16_TwoShards");
    }

    [TestCaseSource(nameof(Variants))]
    public async Task SyntheticArchitecture_MatchesNaiveFloat64Reference_ThroughVerifyCommand(DeepSeekV3Config config, TensorDType dtype, int shards)
    {
        using var dir = new TempDirectory();
        SyntheticCheckpoint.WriteDirectory(dir.Path, config, seed: 11, dtype, shards);
        string golden = dir.File("golden.safetensors");
        using (Checkpoint checkpoint = Checkpoint.Open(dir.Path))
            GoldenWriter.Write(golden, new NaiveReferenceModel(config, checkpoint), config.VocabSize, [[0, 5], [0, 17, 3, 99, 42, 7, 8, 250, 31, 64, 2, 9, 11]], steps: 4);

        var output = new StringWriter();
        int exit = await Program.RunAsync(["verify", "--model", dir.Path, "--golden", golden, "--json"], output, TextWriter.Null);
        using JsonDocument result = JsonDocument.Parse(output.ToString());
        foreach (JsonElement prompt in result.RootElement.GetProperty("prompts").EnumerateArray())
        {
            Assert.That(prompt.GetProperty("max_rel_error").GetDouble(), Is.LessThan(ModelVerifier.ExactRelativeErrorBound));
            Assert.That(prompt.GetProperty("greedy_match").GetBoolean(), Is.True);
        }
        Assert.That(result.RootElement.GetProperty("pass").GetBoolean(), Is.True);
        Assert.That(exit, Is.Zero);
    }

    [Test]
    public void FixtureResavedAsF32InFourShards_StillMatchesItsGolden()
    {
        using var dir = new TempDirectory();
        using (Checkpoint original = Checkpoint.Open(Fixtures.TinyV3))
        {
            var tensors = original.TensorNames.Order(StringComparer.Ordinal)
                .Select(n => (n, TensorDType.F32, original.Info(n).Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(original.ReadSingle(n).AsSpan()).ToArray()))
                .ToList();
            SafetensorsWriter.WriteCheckpoint(dir.Path, tensors, shards: 4);
        }
        File.Copy(Path.Combine(Fixtures.TinyV3, "config.json"), dir.File("config.json"));
        using DeepSeekV3Model model = DeepSeekV3Model.Load(dir.Path);
        var results = ModelVerifier.Verify(model, GoldenPrompt.ReadAll(Path.Combine(Fixtures.TinyV3, "golden.safetensors")));
        Assert.That(results.Max(r => r.MaxRelativeError), Is.LessThan(ModelVerifier.ExactRelativeErrorBound));
        Assert.That(results.All(r => r.GreedyMatch), Is.True);
    }

    [TestCase("routed_scaling_factor", 2.0)]
    [TestCase("topk_group", 4)]
    [TestCase("rms_norm_eps", 1e-2)]
    public async Task VerifyCommand_FailsWhenTheModelDiffersFromTheReference(string field, double value)
    {
        // The same weights under a config that changes one feature of the computation must not pass.
        using var dir = new TempDirectory();
        File.Copy(Path.Combine(Fixtures.TinyV3, "model.safetensors"), dir.File("model.safetensors"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.TinyV3, "config.json")))!.AsObject();
        config[field] = value;
        File.WriteAllText(dir.File("config.json"), config.ToJsonString());

        var output = new StringWriter();
        int exit = await Program.RunAsync(["verify", "--model", dir.Path, "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors")], output, TextWriter.Null);
        Assert.That(exit, Is.EqualTo(Program.ExitMismatch));
        Assert.That(output.ToString(), Does.Contain("FAIL"));
    }

    [Test]
    public async Task VerifyCommand_ReportsMissingInputWithExitCodeTwo()
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["verify", "--model", "/nonexistent", "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors")], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("/nonexistent"));
    }
}
