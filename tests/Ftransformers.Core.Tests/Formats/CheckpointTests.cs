using System.Runtime.InteropServices;
using Ftransformers.Formats;
using Ftransformers.Kernels;
using Ftransformers.Model;
using Ftransformers.Tests.Support;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Formats;

[TestFixture]
public class CheckpointTests
{
    [Test]
    public void ShardedCheckpoint_FindsEachTensorInItsShard()
    {
        using var dir = new TempDirectory();
        var tensors = Enumerable.Range(0, 5).Select(i => ($"t{i}", TensorDType.F32, new long[] { 1 }, BitConverter.GetBytes((float)i))).ToList();
        SafetensorsWriter.WriteCheckpoint(dir.Path, tensors, shards: 3);
        Assert.That(Directory.GetFiles(dir.Path, "model-*-of-00003.safetensors"), Has.Length.EqualTo(3));

        using Checkpoint checkpoint = Checkpoint.Open(dir.Path);
        for (int i = 0; i < 5; i++)
            Assert.That(checkpoint.ReadSingle($"t{i}"), Is.EqualTo(new[] { (float)i }));
    }

    [Test]
    public void IndexNamingMissingShard_IsReported()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.WriteCheckpoint(dir.Path, [("a", TensorDType.F32, [1], new byte[4]), ("b", TensorDType.F32, [1], new byte[4])], shards: 2);
        File.Delete(Path.Combine(dir.Path, "model-00002-of-00002.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => Checkpoint.Open(dir.Path));
        Assert.That(e!.Message, Does.Contain("model-00002-of-00002.safetensors"));
    }

    [Test]
    public void IndexListingTensorItsShardLacks_IsReported()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.WriteCheckpoint(dir.Path, [("a", TensorDType.F32, [1], new byte[4]), ("b", TensorDType.F32, [1], new byte[4])], shards: 2);
        string index = Path.Combine(dir.Path, Checkpoint.IndexFileName);
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"b\"", "\"c\""));
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Open(dir.Path));
        Assert.That(e!.Message, Does.Contain("'c'"));
    }

    [Test]
    public void MissingTensor_NamesItAndTheCheckpoint()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.WriteCheckpoint(dir.Path, [("a", TensorDType.F32, [1], new byte[4])]);
        using Checkpoint checkpoint = Checkpoint.Open(dir.Path);
        var e = Assert.Throws<KeyNotFoundException>(() => checkpoint.Info("model.norm.weight"));
        Assert.That(e!.Message, Does.Contain("model.norm.weight").And.Contain(dir.Path));
    }

    [Test]
    public void FolderWithoutSafetensors_IsReported()
    {
        using var dir = new TempDirectory();
        Assert.Throws<FileNotFoundException>(() => Checkpoint.Open(dir.Path));
        Assert.Throws<DirectoryNotFoundException>(() => Checkpoint.Open(dir.File("absent")));
    }

    [Test]
    public void Fp8Weight_IsScaledPerBlock()
    {
        // 3x5 weight in 2x2 blocks: scales [2, 3]; byte 0x38 is 1.0 and 0x40 is 2.0 in E4M3.
        using var dir = new TempDirectory();
        byte[] w = Enumerable.Repeat((byte)0x38, 15).ToArray();
        w[14] = 0x40;
        float[] scales = [1, 2, 3, 4, 5, 6];
        SafetensorsWriter.WriteCheckpoint(dir.Path, [
            ("x.weight", TensorDType.F8_E4M3, [3, 5], w),
            ("x.weight_scale_inv", TensorDType.F32, [2, 3], MemoryMarshal.AsBytes(scales.AsSpan()).ToArray())]);
        using Checkpoint checkpoint = Checkpoint.Open(dir.Path);
        float[] decoded = checkpoint.ReadSingle("x.weight", fp8BlockSize: 2);
        Assert.That(decoded, Is.EqualTo(new float[] { 1, 1, 2, 2, 3, 1, 1, 2, 2, 3, 4, 4, 5, 5, 12 }));
    }

    [Test]
    public void Fp8WeightWithoutScale_IsReported()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.WriteCheckpoint(dir.Path, [("x.weight", TensorDType.F8_E4M3, [2, 2], new byte[4])]);
        using Checkpoint checkpoint = Checkpoint.Open(dir.Path);
        var e = Assert.Throws<InvalidDataException>(() => checkpoint.ReadSingle("x.weight"));
        Assert.That(e!.Message, Does.Contain("x.weight_scale_inv"));
    }

    [Test]
    public void F16AndBf16_DecodeExactly()
    {
        using var dir = new TempDirectory();
        Half[] halves = [(Half)1.5f, (Half)(-0.25f)];
        ushort[] bf = [BFloat16.FromSingle(3.0f), BFloat16.FromSingle(-1.0f / 1024)];
        SafetensorsWriter.WriteCheckpoint(dir.Path, [
            ("h", TensorDType.F16, [2], MemoryMarshal.AsBytes(halves.AsSpan()).ToArray()),
            ("b", TensorDType.BF16, [2], MemoryMarshal.AsBytes(bf.AsSpan()).ToArray())]);
        using Checkpoint checkpoint = Checkpoint.Open(dir.Path);
        Assert.That(checkpoint.ReadSingle("h"), Is.EqualTo(new[] { 1.5f, -0.25f }));
        Assert.That(checkpoint.ReadSingle("b"), Is.EqualTo(new[] { 3.0f, -1.0f / 1024 }));
    }

    [Test]
    public void IntegerTensor_IsRejectedAsWeight()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.WriteCheckpoint(dir.Path, [("i", TensorDType.I32, [1], new byte[4])]);
        using Checkpoint checkpoint = Checkpoint.Open(dir.Path);
        Assert.That(Assert.Throws<InvalidDataException>(() => checkpoint.ReadSingle("i"))!.Message, Does.Contain("'i'").And.Contain("I32"));
    }

    [Test]
    public void TensorShapeDisagreeingWithConfig_NamesTensorAndBothShapes()
    {
        using var dir = new TempDirectory();
        DeepSeekV3Config config = SyntheticModels.Tiny;
        var tensors = SyntheticCheckpoint.Tensors(config, seed: 3);
        int i = tensors.FindIndex(t => t.Name == "model.layers.1.self_attn.kv_b_proj.weight");
        tensors[i] = (tensors[i].Name, TensorDType.BF16, [128, 64], new byte[128 * 64 * 2]);
        SafetensorsWriter.WriteCheckpoint(dir.Path, tensors);
        File.WriteAllText(dir.File("config.json"), config.ToJson());
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Model.Load(dir.Path));
        Assert.That(e!.Message, Does.Contain("kv_b_proj").And.Contain("[128, 64]").And.Contain("[256, 32]"));
    }

    [Test]
    public void CheckpointMissingALayerTensor_NamesIt()
    {
        using var dir = new TempDirectory();
        DeepSeekV3Config config = SyntheticModels.Tiny;
        var tensors = SyntheticCheckpoint.Tensors(config, seed: 3).Where(t => t.Name != "model.layers.2.mlp.experts.7.up_proj.weight").ToList();
        SafetensorsWriter.WriteCheckpoint(dir.Path, tensors);
        File.WriteAllText(dir.File("config.json"), config.ToJson());
        var e = Assert.Throws<KeyNotFoundException>(() => DeepSeekV3Model.Load(dir.Path));
        Assert.That(e!.Message, Does.Contain("model.layers.2.mlp.experts.7.up_proj.weight"));
    }
}
