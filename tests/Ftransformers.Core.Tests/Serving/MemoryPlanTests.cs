using Ftransformers.Backends;
using Ftransformers.Formats;
using Ftransformers.Generation;
using Ftransformers.Inference;
using Ftransformers.Model;
using Ftransformers.Serving;
using NUnit.Framework;

namespace Ftransformers.Tests.Serving;

[TestFixture]
public class MemoryPlanTests
{
    // The plan's weights, worked out from the config, are the bytes the loaded model's backends hold.
    [TestCase("f32")]
    [TestCase("bf16")]
    [TestCase("w8a8-int4")]
    [TestCase("w8a8-q4_k")]
    public void Weights_AreWhatTheLoadedModelHolds(string preset)
    {
        // Q4_K needs whole blocks of 256 columns.
        DeepSeekV3Config config = preset == "w8a8-q4_k" ? SyntheticModels.Tiny with { HiddenSize = 256, MoeIntermediateSize = 256 } : SyntheticModels.Tiny;
        Precision precision = Precision.Parse(preset);
        using DeepSeekV3Model model = DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 1),
            new ModelLoadOptions { Precision = precision, CpuThreads = 1 });
        IAttentionBackend attention = model.AttentionBackend;
        long held = config.VocabSize * attention.WeightsOf(ModelPart.Embedding, 0).Bytes + attention.WeightsOf(ModelPart.Head, 0).Bytes;
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            held += attention.WeightsOf(ModelPart.Attention, i).Bytes + attention.WeightsOf(ModelPart.DenseMlp, i).Bytes
                + attention.WeightsOf(ModelPart.Router, i).Bytes + attention.WeightsOf(ModelPart.SharedExperts, i).Bytes;
            if (config.IsMoeLayer(i))
                held += config.NRoutedExperts * model.ExpertBackend.ExpertWeights(i).Bytes;
        }
        MemoryPlan plan = MemoryPlan.Create(config, new InferenceSessionOptions { Precision = precision, MaxTotalTokens = 64 }, TensorDType.BF16, machineBytes: 1L << 40);
        Assert.That(plan.WeightBytes, Is.EqualTo(held));
    }

    [Test]
    public void RoutedExperts_AreSplitAcrossNodesByThreads_TheRestOnTheFirst()
    {
        DeepSeekV3Config config = SyntheticModels.V3Layout;
        var options = new InferenceSessionOptions { Precision = Precision.W8A8Int4, MaxTotalTokens = 1024 };
        (long side, long routed) = MemoryPlan.WeightBytesOf(config, Precision.W8A8Int4, TensorDType.BF16);
        MemoryPlan plan = MemoryPlan.Create(config, options, TensorDType.BF16, [3, 1], machineBytes: 1L << 40);
        Assert.That(plan.WeightBytesPerNode, Is.EqualTo(new[] { side + routed * 3 / 4, routed - routed * 3 / 4 }));
        Assert.That(plan.KvBytes, Is.EqualTo(1024L * config.NumHiddenLayers * (config.KvLoraRank + config.QkRopeHeadDim) * sizeof(float)));
        Assert.That(plan.Fits, Is.True);
    }

    [Test]
    public void OversizedPool_IsRefusedWithTheNumbers_AndAnUnsetPoolIsSizedToFit()
    {
        DeepSeekV3Config config = SyntheticModels.Tiny;
        const long available = 64L << 20;
        var oversized = new InferenceSessionOptions { MaxTotalTokens = 1 << 20 };
        MemoryPlan plan = MemoryPlan.Create(config, oversized, TensorDType.BF16, machineBytes: available);
        Assert.That(plan.Fits, Is.False);
        var error = Assert.Throws<ArgumentException>(() => plan.EnsureFits(oversized))!;
        Assert.That(error.ParamName, Is.EqualTo(nameof(InferenceSessionOptions.MaxTotalTokens)));
        Assert.That(error.Message, Does.Contain("KV cache pool 0.6 GB (1048576 tokens)").And.Contain("0.067 GB available").And.Contain("--max-total-tokens 1048576"));

        MemoryPlan sized = MemoryPlan.Create(config, new InferenceSessionOptions(), TensorDType.BF16, machineBytes: available);
        Assert.That(sized.Fits, Is.True);
        Assert.That(sized.KvBytes, Is.LessThanOrEqualTo((available - sized.WeightBytes - sized.ScratchBytes) / 4 + 16 * 576));
        Assert.That(sized.KvTokens, Is.GreaterThanOrEqualTo(4096), "at least 4096 tokens, or the context");
    }

    [Test]
    public void WithoutChunking_AStepMayHoldAWholePrompt_SoTheContextBoundsTheScratch()
    {
        DeepSeekV3Config config = SyntheticModels.V3Real;
        var unchunked = new InferenceSessionOptions { ChunkedPrefillSize = -1, MaxTotalTokens = 4096 };
        MemoryPlan whole = MemoryPlan.Create(config, unchunked, TensorDType.BF16, machineBytes: 64L << 30);
        var error = Assert.Throws<ArgumentException>(() => whole.EnsureFits(unchunked))!;
        Assert.That(error.ParamName, Is.EqualTo(nameof(InferenceSessionOptions.ChunkedPrefillSize)));
        Assert.That(error.Message, Does.Contain("--chunked-prefill-size").And.Contain("--context-length"));

        MemoryPlan shortened = MemoryPlan.Create(config, unchunked with { ContextLength = 8192 }, TensorDType.BF16, machineBytes: 64L << 30);
        MemoryPlan chunked = MemoryPlan.Create(config, unchunked with { ChunkedPrefillSize = 2048 }, TensorDType.BF16, machineBytes: 64L << 30);
        Assert.That(shortened.Fits && chunked.Fits, Is.True);
        Assert.That(shortened.ScratchBytes, Is.GreaterThan(chunked.ScratchBytes));
    }

    [Test]
    public void ASyntheticModel_HoldsItsImage_BesideWhatIsCopiedFromIt()
    {
        DeepSeekV3Config c = SyntheticModels.Tiny;
        // Read in place: the image is the weights.
        Assert.That(InferenceSession.PlanMemory(new InferenceSessionOptions { Model = "synthetic:tiny", MaxTotalTokens = 64, CpuThreads = 1 }).ImageBytes, Is.Zero);
        // Quantized at load: the BF16 image stays beside the copies; the embedding and the routers are still read from it.
        MemoryPlan quantized = InferenceSession.PlanMemory(new InferenceSessionOptions { Model = "synthetic:tiny", Precision = Precision.W8A8Int4, MaxTotalTokens = 64, CpuThreads = 1 });
        (long side, long routed) = MemoryPlan.WeightBytesOf(c, Precision.Bf16, TensorDType.BF16);
        int moeLayers = Enumerable.Range(0, c.NumHiddenLayers).Count(c.IsMoeLayer);
        long embedding = 2L * c.VocabSize * c.HiddenSize, routers = moeLayers * (4L * c.HiddenSize + 2L * c.NRoutedExperts * c.HiddenSize + 4L * c.NRoutedExperts);
        Assert.That(quantized.ImageBytes, Is.EqualTo(side + routed - embedding - routers));
        Assert.That(quantized.ToString(), Does.Contain("checkpoint image held in memory"));
        // On several nodes the routed experts are copied onto their nodes, beside the image.
        Assert.That(MemoryPlan.ImageBytesBesideCopies(c, Precision.F32, TensorDType.BF16, nodes: 2), Is.EqualTo(routed));
        Assert.That(MemoryPlan.ImageBytesBesideCopies(c with { ConvertedPrecision = Precision.W8A8Int4 }, Precision.W8A8Int4, TensorDType.BF16, nodes: 1), Is.Zero);
    }

    [Test]
    public void Load_RefusesAPlanThatDoesNotFit_BeforeLoadingTheModel()
    {
        var error = Assert.Throws<ArgumentException>(() => InferenceSession.Load(new InferenceSessionOptions { Model = "synthetic:v3-real", MaxTotalTokens = int.MaxValue, CpuThreads = 1 }))!;
        Assert.That(error.Message, Does.StartWith("The model does not fit: weights "));
    }
}
