using System.Text.Json;
using Ftransformers.Cli;
using Ftransformers.Formats;
using Ftransformers.Model;
using Ftransformers.Tests.Support;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class CheckpointConverterTests : TempDirectoryTest
{
    private static float[] PrefillLogits(DeepSeekV3Model model, int[] tokens) =>
        model.Forward(tokens, new SequenceKvCache(model.Config), allPositions: true);

    private static readonly int[] Prompt = [0, 17, 250, 3, 99, 512, 7, 1000, 42];

    [TestCase("tiny-v3", "w8a8-int4")]
    [TestCase("tiny-v3-fp8", "w8a8-int4")]
    [TestCase("tiny-v3-fp8", "bf16")]
    public async Task ConvertedCheckpoint_GivesBitIdenticalLogitsToQuantizingAtLoad(string fixture, string preset)
    {
        string source = fixture == "tiny-v3" ? Fixtures.TinyV3 : Fixtures.TinyV3Fp8;
        int exit = await Program.RunAsync(["convert", "--model", source, "--out", TempPath, "--preset", preset, "--shard-size-gb", "0.0005"], TextWriter.Null, TextWriter.Null);
        Assert.That(exit, Is.Zero);
        Assert.That(Directory.GetFiles(TempPath, "model-*.safetensors"), Has.Length.GreaterThan(1), "a small shard size splits the output");

        Precision precision = Precision.Parse(preset);
        using DeepSeekV3Model atLoad = DeepSeekV3Model.Load(source, new ModelLoadOptions { Precision = precision });
        using DeepSeekV3Model converted = DeepSeekV3Model.Load(TempPath);
        Assert.That(converted.Precision, Is.EqualTo(precision));
        Assert.That(PrefillLogits(converted, Prompt), Is.EqualTo(PrefillLogits(atLoad, Prompt)));
    }

    // Q4_K needs whole blocks of 256 columns, which the fixture's experts lack: a synthetic model of Q4_K widths.
    [Test]
    public async Task ConvertedQ4K_StoresTheBlocks_AndGivesBitIdenticalLogitsToQuantizingAtLoad()
    {
        DeepSeekV3Config config = SyntheticModels.Tiny with { HiddenSize = 256, MoeIntermediateSize = 256 };
        string source = Path.Combine(TempPath, "source"), converted = Path.Combine(TempPath, "converted");
        SyntheticCheckpoint.WriteDirectory(source, config, seed: 2);
        int exit = await Program.RunAsync(["convert", "--model", source, "--out", converted, "--preset", "w8a8-q4_k"], TextWriter.Null, TextWriter.Null);
        Assert.That(exit, Is.Zero);
        using (Checkpoint checkpoint = Checkpoint.Open(converted))
        {
            TensorInfo blocks = checkpoint.Info("model.layers.1.mlp.experts.3.down_proj.q4_k");
            Assert.That((blocks.DType, blocks.Shape), Is.EqualTo((TensorDType.U8, new long[] { 256, 144 })), "256 rows of one 144-byte block");
        }
        using DeepSeekV3Model atLoad = DeepSeekV3Model.Load(source, new ModelLoadOptions { Precision = Precision.W8A8Q4K });
        using DeepSeekV3Model fromBlocks = DeepSeekV3Model.Load(converted);
        Assert.That(fromBlocks.Precision, Is.EqualTo(Precision.W8A8Q4K));
        Assert.That(PrefillLogits(fromBlocks, Prompt), Is.EqualTo(PrefillLogits(atLoad, Prompt)));

        // The fixture's 128-column experts are refused, naming the tensor, before anything is written.
        string refused = Path.Combine(TempPath, "refused");
        var error = new StringWriter();
        Assert.That(await Program.RunAsync(["convert", "--model", Fixtures.TinyV3, "--out", refused, "--preset", "w8a8-q4_k"], TextWriter.Null, error), Is.Not.Zero);
        Assert.That(error.ToString(), Does.Contain("multiple of 256"));
        Assert.That(Directory.Exists(refused), Is.False);
    }

    [Test]
    public void ConvertedCheckpoint_StoresQuantizedTensorsAndRecordsTheFormats()
    {
        CheckpointConverter.Convert(Fixtures.TinyV3, TempPath, Precision.W8A8Int4, int4Layout: Int4FileLayout.Rows);
        using Checkpoint checkpoint = Checkpoint.Open(TempPath);
        Assert.Multiple(() =>
        {
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.qweight").DType, Is.EqualTo(TensorDType.U8));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.qweight").Shape, Is.EqualTo(new long[] { 64, 64 }));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.mins").Shape, Is.EqualTo(new long[] { 64, 4 }));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.scales").DType, Is.EqualTo(TensorDType.F16));
            Assert.That(checkpoint.Info("model.layers.1.mlp.experts.3.up_proj.mins").DType, Is.EqualTo(TensorDType.F16));
            Assert.That(checkpoint.Info("model.layers.1.self_attn.kv_b_proj.scales").DType, Is.EqualTo(TensorDType.F32));
            Assert.That(checkpoint.Info("model.layers.1.self_attn.kv_b_proj.qweight").DType, Is.EqualTo(TensorDType.I8));
            Assert.That(checkpoint.Info("model.layers.1.self_attn.kv_b_proj.scales").Shape, Is.EqualTo(new long[] { 256 }));
            Assert.That(checkpoint.Contains("model.layers.1.mlp.experts.3.up_proj.weight"), Is.False);
            Assert.That(checkpoint.Info("model.layers.1.mlp.gate.weight").DType, Is.EqualTo(TensorDType.BF16), "the router stays as stored");
        });
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(TempPath, "config.json")));
        JsonElement q = config.RootElement.GetProperty("quantization_config");
        Assert.That(q.GetProperty("quant_method").GetString(), Is.EqualTo("ftransformers"));
        Assert.That(q.GetProperty("routed_experts").GetString(), Is.EqualTo("int4-g32-asym"));
        using SafetensorsFile shard = SafetensorsFile.Open(Path.Combine(TempPath, "model.safetensors"));
        Assert.That(shard.Metadata[CheckpointConverter.MetadataKey], Does.Contain("w8a8"));
    }

    // Row groups are what the x86 kernels read: there the experts are mapped in place, elsewhere repacked into rows;
    // either way the logits are those of the row layout and of quantizing at load.
    [Test]
    public unsafe void ConvertedCheckpoint_InRowGroups_IsMappedInPlaceWhereTheKernelsReadThem()
    {
        string rows = Path.Combine(TempPath, "rows"), groups = Path.Combine(TempPath, "groups");
        CheckpointConverter.Convert(Fixtures.TinyV3, rows, Precision.W8A8Int4, int4Layout: Int4FileLayout.Rows);
        CheckpointConverter.Convert(Fixtures.TinyV3, groups, Precision.W8A8Int4, int4Layout: Int4FileLayout.RowGroups);
        using (Checkpoint checkpoint = Checkpoint.Open(groups))
        {
            const string up = "model.layers.1.mlp.experts.3.up_proj";
            Assert.That(checkpoint.Contains(up + ".qweight"), Is.False);
            // 64 rows of 128 columns: 4 groups of 16 rows, 4 blocks of 256 bytes each; 16 scales (and mins) per block.
            Assert.That((checkpoint.Info(up + ".qweight_rg").DType, checkpoint.Info(up + ".qweight_rg").Shape), Is.EqualTo((TensorDType.U8, new long[] { 4, 1024 })));
            Assert.That(checkpoint.Info(up + ".scales_rg").Shape, Is.EqualTo(new long[] { 4, 64 }));
            Assert.That(checkpoint.Info(up + ".mins_rg").DType, Is.EqualTo(TensorDType.F16));
        }

        using DeepSeekV3Model atLoad = DeepSeekV3Model.Load(Fixtures.TinyV3, new ModelLoadOptions { Precision = Precision.W8A8Int4, CpuThreads = 1 });
        using DeepSeekV3Model fromRows = DeepSeekV3Model.Load(rows, new ModelLoadOptions { CpuThreads = 1 });
        using DeepSeekV3Model fromGroups = DeepSeekV3Model.Load(groups, new ModelLoadOptions { CpuThreads = 1 });
        float[] expected = PrefillLogits(atLoad, Prompt);
        Assert.That(PrefillLogits(fromRows, Prompt), Is.EqualTo(expected));
        Assert.That(PrefillLogits(fromGroups, Prompt), Is.EqualTo(expected));

        var experts = (Ftransformers.Backends.Cpu.CpuExpertBackend)fromGroups.ExpertBackend;
        nint start = experts.Layer(1).Experts[3].Up.Storage()[0].Start;
        nint mapped = (nint)fromGroups.Checkpoint.Pointer("model.layers.1.mlp.experts.3.up_proj.qweight_rg");
        if (Ftransformers.Kernels.Int4RowGroupKernel.IsSupported)
            Assert.That(start, Is.EqualTo(mapped), "the row groups are read where they are mapped");
        else
            Assert.That(start, Is.Not.EqualTo(mapped), "repacked into rows for this CPU's kernels");
    }

    [Test]
    public void ConvertedCheckpoint_RefusesAnotherPrecision()
    {
        CheckpointConverter.Convert(Fixtures.TinyV3, TempPath, Precision.W8A8Int4);
        var e = Assert.Throws<ArgumentException>(() => DeepSeekV3Model.Load(TempPath, new ModelLoadOptions { Precision = Precision.Bf16 }));
        Assert.That(e!.Message, Does.Contain("int4-g32-asym"));
    }

    [Test]
    public void ConvertingAConvertedCheckpoint_IsRefused()
    {
        CheckpointConverter.Convert(Fixtures.TinyV3, TempPath, Precision.W8A8Int4);
        Assert.Throws<InvalidDataException>(() => CheckpointConverter.Convert(TempPath, Path.Combine(TempPath, "again"), Precision.W8A8Int4));
    }

    [Test]
    public async Task VerifyWithPreset_PassesOnTheFixture_AndReportsJson()
    {
        var output = new StringWriter();
        int exit = await Program.RunAsync(["verify", "--model", Fixtures.TinyV3, "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors"), "--preset", "w8a8-int4", "--json"], output, TextWriter.Null);
        using JsonDocument result = JsonDocument.Parse(output.ToString());
        Assert.That(result.RootElement.GetProperty("pass").GetBoolean(), Is.True);
        Assert.That(result.RootElement.GetProperty("prompts").EnumerateArray().Select(p => p.GetProperty("mean_kl").GetDouble()), Is.All.LessThan(0.02));
        Assert.That(exit, Is.Zero);
    }

    [Test]
    public async Task VerifyWithPreset_FailsWhenTheModelDiffers()
    {
        File.Copy(Path.Combine(Fixtures.TinyV3, "model.safetensors"), Path.Combine(TempPath, "model.safetensors"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.TinyV3, "config.json")))!.AsObject();
        config["routed_scaling_factor"] = 1.0;
        File.WriteAllText(Path.Combine(TempPath, "config.json"), config.ToJsonString());
        int exit = await Program.RunAsync(["verify", "--model", TempPath, "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors"), "--preset", "w8a8-int4"], TextWriter.Null, TextWriter.Null);
        Assert.That(exit, Is.EqualTo(Program.ExitMismatch));
    }
}
