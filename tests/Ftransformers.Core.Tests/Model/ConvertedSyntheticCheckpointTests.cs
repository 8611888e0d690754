using System.Runtime.InteropServices;
using Ftransformers.Formats;
using Ftransformers.Model;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class ConvertedSyntheticCheckpointTests
{
    // The generator of synthetic:v3-real on the tiny shapes, with small images so that the checkpoint spans many files.
    private static readonly DeepSeekV3Config Config = SyntheticModels.Tiny with { ConvertedPrecision = Precision.W8A8Int4 };

    private static Checkpoint Create(long maxFileBytes = 64 << 10, Int4FileLayout layout = Int4FileLayout.Rows) =>
        ConvertedSyntheticCheckpoint.CreateInMemory(Config, seed: 5, maxFileBytes, layout);

    [Test]
    public void Checkpoint_HasTheConvertedLayout()
    {
        using Checkpoint checkpoint = Create();
        Assert.Multiple(() =>
        {
            Assert.That(checkpoint.Info("model.embed_tokens.weight").DType, Is.EqualTo(TensorDType.BF16));
            Assert.That(checkpoint.Info("model.layers.0.input_layernorm.weight").DType, Is.EqualTo(TensorDType.BF16));
            Assert.That(checkpoint.Info("model.layers.1.mlp.gate.weight").DType, Is.EqualTo(TensorDType.BF16));
            Assert.That(checkpoint.Info("model.layers.0.self_attn.q_b_proj.qweight").DType, Is.EqualTo(TensorDType.I8));
            Assert.That(checkpoint.Info("model.layers.0.self_attn.q_b_proj.scales").Shape, Is.EqualTo(new long[] { 4 * 48 }));
            Assert.That(checkpoint.Info("model.layers.0.mlp.down_proj.qweight").DType, Is.EqualTo(TensorDType.I8));
            Assert.That(checkpoint.Info("model.layers.1.mlp.shared_experts.up_proj.qweight").DType, Is.EqualTo(TensorDType.I8));
            Assert.That(checkpoint.Info("lm_head.qweight").DType, Is.EqualTo(TensorDType.I8));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.qweight").Shape, Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.qweight").DType, Is.EqualTo(TensorDType.U8));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.scales").Shape, Is.EqualTo(new long[] { 64, 4 }));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.down_proj.mins").Shape, Is.EqualTo(new long[] { 128, 2 }));
            Assert.That(checkpoint.Contains("model.layers.1.mlp.experts.3.up_proj.weight"), Is.False);
        });
    }

    [Test]
    public void Checkpoint_InRowGroups_HoldsTheExpertsAsTheX86KernelsReadThem()
    {
        using Checkpoint checkpoint = Create(layout: Int4FileLayout.RowGroups);
        // 64 rows of 128 columns: 4 groups of 16 rows, 4 blocks of 256 bytes; 16 scales and mins per block.
        Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.qweight_rg").Shape, Is.EqualTo(new long[] { 4, 1024 }));
        Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.scales_rg").Shape, Is.EqualTo(new long[] { 4, 64 }));
        Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.down_proj.mins_rg").Shape, Is.EqualTo(new long[] { 8, 32 }));
        Assert.That(checkpoint.Contains("model.layers.1.mlp.experts.3.up_proj.qweight"), Is.False);
        Assert.That(checkpoint.Info("lm_head.qweight").DType, Is.EqualTo(TensorDType.I8), "INT8 matrices keep rows");
    }

    [TestCase(Int4FileLayout.Rows, "")]
    [TestCase(Int4FileLayout.RowGroups, "_rg")]
    public void Int4Experts_DecodeToUniformWeightsOfVarianceOneOverFanIn(Int4FileLayout layout, string suffix)
    {
        using Checkpoint checkpoint = Create(layout: layout);
        const string name = "model.layers.2.mlp.experts.0.gate_proj";
        ReadOnlySpan<byte> packed = checkpoint.Bytes(name + ".qweight" + suffix);
        Assert.That(checkpoint.Info(name + ".scales" + suffix).DType, Is.EqualTo(TensorDType.F16));
        float scale = (float)MemoryMarshal.Cast<byte, Half>(checkpoint.Bytes(name + ".scales" + suffix))[0];
        float min = (float)MemoryMarshal.Cast<byte, Half>(checkpoint.Bytes(name + ".mins" + suffix))[0];
        double sum = 0, squares = 0;
        var histogram = new int[16];
        foreach (byte b in packed)
        {
            foreach (int code in (ReadOnlySpan<int>)[b & 0xF, b >> 4])
            {
                double w = scale * code + min;
                sum += w;
                squares += w * w;
                histogram[code]++;
            }
        }
        int n = packed.Length * 2;
        double bound = Math.Sqrt(3.0 / 128);
        // Stored as F16, the stored precision of INT4 scales and mins.
        Assert.That(min, Is.EqualTo((float)(Half)(-bound)));
        Assert.That(scale, Is.EqualTo((float)(Half)(2 * bound / 15)));
        Assert.That(sum / n, Is.EqualTo(0).Within(0.1 * bound));
        Assert.That(squares / n * 128, Is.EqualTo(1).Within(0.2), "variance about 1/fan_in");
        Assert.That(histogram, Has.All.InRange(n / 16 * 0.8, n / 16 * 1.2), "uniform codes");
    }

    [Test]
    public void Int8Codes_AreSymmetric()
    {
        using Checkpoint checkpoint = Create();
        ReadOnlySpan<sbyte> codes = MemoryMarshal.Cast<byte, sbyte>(checkpoint.Bytes("lm_head.qweight"));
        int lowest = 0, highest = 0;
        double squares = 0;
        foreach (sbyte c in codes)
        {
            lowest = Math.Min(lowest, c);
            highest = Math.Max(highest, c);
            squares += c * c;
        }
        float scale = MemoryMarshal.Cast<byte, float>(checkpoint.Bytes("lm_head.scales"))[7];
        Assert.That((lowest, highest), Is.EqualTo((-127, 127)));
        Assert.That(squares / codes.Length * scale * scale * Config.HiddenSize, Is.EqualTo(1).Within(0.1));
    }

    [Test]
    public void SameSeed_GivesTheSameBytes_WhateverTheFileSplit()
    {
        using Checkpoint split = Create(64 << 10), whole = Create(1L << 30);
        foreach (string name in whole.TensorNames)
            Assert.That(split.Bytes(name).SequenceEqual(whole.Bytes(name)), Is.True, name);
    }

    [Test]
    public void Model_LoadsAsConverted_AndGivesFiniteLogits()
    {
        using DeepSeekV3Model model = DeepSeekV3Model.FromCheckpoint(Config, Create());
        Assert.That(model.Precision, Is.EqualTo(Precision.W8A8Int4));
        float[] logits = model.Forward([0, 17, 250, 3, 99, 512], new SequenceKvCache(model.Config), allPositions: true);
        Assert.That(logits, Has.Length.EqualTo(6 * Config.VocabSize));
        Assert.That(logits, Has.All.Matches<float>(float.IsFinite));
        Assert.That(logits.Select(Math.Abs).Max(), Is.InRange(0.01f, 1000f), "activations keep a sane scale");
    }

    [Test]
    public void V3Real_HasDeepSeekV3Widths_InTwoLayers()
    {
        DeepSeekV3Config c = SyntheticModels.Get("v3-real");
        Assert.Multiple(() =>
        {
            Assert.That((c.HiddenSize, c.NumAttentionHeads, c.QLoraRank, c.KvLoraRank), Is.EqualTo((7168, 128, (int?)1536, 512)));
            Assert.That((c.QkNopeHeadDim, c.QkRopeHeadDim, c.VHeadDim, c.VocabSize), Is.EqualTo((128, 64, 128, 129280)));
            Assert.That((c.NRoutedExperts, c.MoeIntermediateSize, c.NumExpertsPerTok, c.NGroup, c.TopkGroup, c.NSharedExperts), Is.EqualTo((256, 2048, 8, 8, 4, 1)));
            Assert.That((c.IntermediateSize, c.NumHiddenLayers, c.FirstKDenseReplace, c.RoutedScalingFactor), Is.EqualTo((18432, 2, 1, 2.5)));
            Assert.That(c.RopeScaling, Is.EqualTo(new RopeScaling(40, 4096, 32, 1, 1, 1)));
            Assert.That((c.MaxPositionEmbeddings, c.ScoringFunc), Is.EqualTo((163840, "sigmoid")));
            Assert.That(c.ConvertedPrecision, Is.EqualTo(Precision.W8A8Int4));
            Assert.That(c.IsMoeLayer(0), Is.False);
            Assert.That(c.IsMoeLayer(1), Is.True);
        });
    }
}
