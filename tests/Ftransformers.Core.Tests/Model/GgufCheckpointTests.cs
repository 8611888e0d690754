using Ftransformers.Cli;
using Ftransformers.Formats;
using Ftransformers.Inference;
using Ftransformers.Model;
using Ftransformers.Tests.Support;
using Ftransformers.Tokenization;
using Ftransformers.Verification;
using NUnit.Framework;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class GgufCheckpointTests
{
    [Test]
    public async Task TheFixtureWrittenAsGguf_ReproducesItsGoldenLogits_ThroughVerify()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("tiny-v3-BF16.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(Fixtures.TinyV3))
            GgufCheckpoint.Write(DeepSeekV3Config.Load(Fixtures.TinyV3), checkpoint, gguf);

        using (GgufFile file = GgufFile.Open(gguf))
        {
            // llama.cpp's names and shapes: experts stacked, dimensions row length first.
            Assert.That(file.Tensors["blk.1.ffn_gate_exps.weight"].Dimensions, Is.EqualTo(new long[] { 128, 64, 16 }));
            Assert.That(file.Tensors["blk.0.attn_kv_b.weight"].Dimensions, Is.EqualTo(new long[] { 32, 256 }));
            Assert.That(file.Tensors["blk.0.attn_kv_b.weight"].Type, Is.EqualTo(GgmlType.BF16));
            DeepSeekV3Config read = GgufCheckpoint.ConfigOf(file), original = DeepSeekV3Config.Load(Fixtures.TinyV3);
            Assert.That(read.EosTokenIds, Is.EqualTo(original.EosTokenIds));
            Assert.That(read with { EosTokenIds = original.EosTokenIds }, Is.EqualTo(original));
        }

        var output = new StringWriter();
        int exit = await Program.RunAsync(["verify", "--model", gguf, "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors"), "--json"], output, TextWriter.Null);
        using var result = System.Text.Json.JsonDocument.Parse(output.ToString());
        foreach (var prompt in result.RootElement.GetProperty("prompts").EnumerateArray())
        {
            Assert.That(prompt.GetProperty("max_rel_error").GetDouble(), Is.LessThan(ModelVerifier.ExactRelativeErrorBound));
            Assert.That(prompt.GetProperty("greedy_match").GetBoolean(), Is.True);
        }
        Assert.That(exit, Is.Zero);
    }

    [Test]
    public void TheFixtureWithKvBSplitIntoKbAndVb_StillMatchesItsGolden()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("tiny-v3-split-mla.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(Fixtures.TinyV3))
            GgufCheckpoint.Write(DeepSeekV3Config.Load(Fixtures.TinyV3), checkpoint, gguf, splitKvB: true);
        using (GgufFile file = GgufFile.Open(gguf))
        {
            Assert.That(file.Tensors.ContainsKey("blk.0.attn_kv_b.weight"), Is.False);
            Assert.That(file.Tensors["blk.0.attn_k_b.weight"].Dimensions, Is.EqualTo(new long[] { 32, 32, 4 }));
            Assert.That(file.Tensors["blk.0.attn_v_b.weight"].Dimensions, Is.EqualTo(new long[] { 32, 32, 4 }));
        }
        using DeepSeekV3Model model = DeepSeekV3Model.Load(gguf);
        var results = ModelVerifier.Verify(model, Ftransformers.Verification.GoldenPrompt.ReadAll(Path.Combine(Fixtures.TinyV3, "golden.safetensors")));
        Assert.That(results.Max(r => r.MaxRelativeError), Is.LessThan(ModelVerifier.ExactRelativeErrorBound));
        Assert.That(results.All(r => r.GreedyMatch), Is.True);
    }

    [Test]
    public async Task TheFixtureInQ8_0_MeetsTheW8A8Criteria_ThroughVerify()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("tiny-v3-Q8_0.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(Fixtures.TinyV3))
            GgufCheckpoint.Write(DeepSeekV3Config.Load(Fixtures.TinyV3), checkpoint, gguf, q8_0: true);
        float[] expected;
        using (GgufFile file = GgufFile.Open(gguf))
        {
            Assert.That(file.Tensors["blk.1.ffn_down_exps.weight"].Type, Is.EqualTo(GgmlType.Q8_0));
            expected = DecodedExpert(file, "blk.1.ffn_up_exps.weight", GgmlType.Q8_0, 3);
        }

        // Every class is Q8_0, so every matrix is kept as its blocks (codes and a scale per 32) and computed as llama.cpp
        // computes Q8_0, holding llama.cpp's values bit for bit; only the router and embedding are decoded.
        using (DeepSeekV3Model model = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { CpuThreads = 1 }))
        {
            Assert.That(model.Precision, Is.EqualTo(Precision.F32 with
            {
                Attention = WeightFormat.W8A8, DenseMlp = WeightFormat.W8A8, SharedExperts = WeightFormat.W8A8, RoutedExperts = WeightFormat.W8A8,
                LmHead = WeightFormat.W8A8, Int8BlockSize = 32,
            }));
            var matrix = (Ftransformers.Backends.Cpu.Int8WeightMatrix)((Ftransformers.Backends.Cpu.CpuExpertBackend)model.ExpertBackend).Layer(1).Experts[3].Up;
            Assert.That(matrix.Weights.BlockSize, Is.EqualTo(32));
            AssertRowsEqual(matrix, expected);
        }

        // Judged by the w8a8-int4 preset's criteria.
        var output = new StringWriter();
        await Program.RunAsync(["verify", "--model", gguf, "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors"), "--json"], output, TextWriter.Null);
        using var result = System.Text.Json.JsonDocument.Parse(output.ToString());
        var prompts = result.RootElement.GetProperty("prompts").EnumerateArray().ToList();
        double meanKl = prompts.Average(p => p.GetProperty("mean_kl").GetDouble());
        double top1 = prompts.Average(p => p.GetProperty("top1_agreement").GetDouble());
        Assert.That(meanKl, Is.LessThanOrEqualTo(0.02));
        Assert.That(top1, Is.GreaterThanOrEqualTo(0.80));
        TestContext.Out.WriteLine($"Q8_0 GGUF of tiny-v3: mean KL {meanKl:G3}, top-1 {top1:P1}");
    }

    // Q4_0 experts are INT4 of group 32 with zero point 8 in our layout: repacked without rounding, they compute with
    // llama.cpp's own values.
    [Test]
    public async Task Q4_0Experts_RunAsInt4WithLlamaCppsValues_BitForBit()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("tiny-v3-Q8_0-Q4_0.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(Fixtures.TinyV3))
            GgufCheckpoint.Write(DeepSeekV3Config.Load(Fixtures.TinyV3), checkpoint, gguf, q8_0: true, q4_0Experts: true);
        float[] expected;
        using (GgufFile file = GgufFile.Open(gguf))
        {
            Assert.That(file.Tensors["blk.1.ffn_up_exps.weight"].Type, Is.EqualTo(GgmlType.Q4_0));
            Assert.That(file.Tensors["blk.1.attn_q_a.weight"].Type, Is.EqualTo(GgmlType.Q8_0));
            expected = DecodedExpert(file, "blk.1.ffn_up_exps.weight", GgmlType.Q4_0, 3);
        }

        using DeepSeekV3Model model = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { CpuThreads = 1 });
        // The Q4_0 experts as INT4, the other classes (all Q8_0 here) as their Q8_0 blocks.
        Assert.That(model.Precision, Is.EqualTo(GgufCheckpoint.Q4_0Experts with
        {
            Attention = WeightFormat.W8A8, DenseMlp = WeightFormat.W8A8, SharedExperts = WeightFormat.W8A8, LmHead = WeightFormat.W8A8, Int8BlockSize = 32,
        }));
        var matrix = ((Ftransformers.Backends.Cpu.CpuExpertBackend)model.ExpertBackend).Layer(1).Experts[3].Up;
        Assert.That(matrix, Is.InstanceOf<Ftransformers.Backends.Cpu.Int4WeightMatrix>());
        AssertRowsEqual(matrix, expected);

        // Held once: where the kernels read row groups, the image holds them so.
        string part = Ftransformers.Kernels.Int4RowGroupKernel.IsSupported ? "qweight_rg" : "qweight";
        unsafe
        {
            Assert.That(matrix.Storage()[0].Start, Is.EqualTo((nint)model.Checkpoint.Pointer($"model.layers.1.mlp.experts.3.up_proj.{part}")));
        }
        // Asked for a preset, the file's blocks are decoded and quantized to it instead.
        using (DeepSeekV3Model preset = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { Precision = Precision.W8A8Int4, CpuThreads = 1 }))
            Assert.That(preset.Precision, Is.EqualTo(Precision.W8A8Int4));

        // Through verify, judged as a quantized model (its figures are printed for the record).
        var output = new StringWriter();
        await Program.RunAsync(["verify", "--model", gguf, "--golden", Path.Combine(Fixtures.TinyV3, "golden.safetensors"), "--json"], output, TextWriter.Null);
        using var result = System.Text.Json.JsonDocument.Parse(output.ToString());
        var prompts = result.RootElement.GetProperty("prompts").EnumerateArray().ToList();
        TestContext.Out.WriteLine($"Q8_0 + Q4_0-experts GGUF of tiny-v3: mean KL {prompts.Average(p => p.GetProperty("mean_kl").GetDouble()):G3}, " +
            $"top-1 {prompts.Average(p => p.GetProperty("top1_agreement").GetDouble()):P1}");
    }

    // One expert's rows of a stacked expert tensor (the experts one after another), as llama.cpp decodes them.
    private static float[] DecodedExpert(GgufFile file, string stacked, GgmlType type, int expert)
    {
        GgufTensor tensor = file.Tensors[stacked];
        long each = tensor.ByteLength / tensor.Dimensions[2];
        var values = new float[tensor.Dimensions[0] * tensor.Dimensions[1]];
        GgmlTypes.Dequantize(type, file.GetBytes(tensor).Slice((int)(expert * each), (int)each), values);
        return values;
    }

    // Every row of `matrix` as F32 equals `expected`, bit for bit.
    private static void AssertRowsEqual(Ftransformers.Backends.Cpu.WeightMatrix matrix, float[] expected)
    {
        Assert.That(expected, Has.Length.EqualTo(matrix.Rows * matrix.Cols), "the matrix's shape");
        var row = new float[matrix.Cols];
        for (int r = 0; r < matrix.Rows; r++)
        {
            matrix.CopyRow(r, row);
            Assert.That(row, Is.EqualTo(expected.AsSpan(r * matrix.Cols, matrix.Cols).ToArray()), $"row {r}");
        }
    }

    // A model whose expert widths are whole Q4_K blocks (the fixture's 128 columns are not: llama.cpp would not write
    // Q4_K for it either).
    private static readonly DeepSeekV3Config Q4KWidths = SyntheticModels.Tiny with { HiddenSize = 256, MoeIntermediateSize = 256 };

    // Every prefill position's logits of `model` against the F32 model's, pooled.
    private static LogitComparison AgainstF32(DeepSeekV3Model model, DeepSeekV3Model f32)
    {
        var comparison = new LogitComparison();
        int[] tokens = [.. Enumerable.Range(0, 24).Select(i => (i * 37 + 5) % model.Config.VocabSize)];
        float[] ours = model.Forward(tokens, new SequenceKvCache(model.Config), allPositions: true);
        float[] reference = f32.Forward(tokens, new SequenceKvCache(f32.Config), allPositions: true);
        int vocab = model.Config.VocabSize;
        for (int t = 0; t < tokens.Length; t++)
            comparison.Add(ours.AsSpan(t * vocab, vocab), reference.AsSpan(t * vocab, vocab));
        return comparison;
    }

    // A Q4_K_M- or Q5_K_M-style file (Q4_K or Q5_K matrices, Q6_K for the experts' down, kv_b and lm_head where widths
    // allow; elsewhere BF16 as stored, or Q8_0 as llama.cpp falls back to) computes every K-quant tensor on its own
    // blocks, mapped from the file (no copy, no second rounding), and each Q8_0 tensor on its blocks too. Its logits meet
    // the quantized criteria against the same file's values computed in F32 (what the kernels' INT8 activations cost).
    [TestCase(GgmlType.Q4_K, false)]
    [TestCase(GgmlType.Q5_K, true)]
    public void KQuantMix_KeepsEveryTensorsBlocks_MappedFromTheFile(GgmlType mix, bool q8_0)
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("k_m.gguf");
        using (Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Q4KWidths, seed: 3))
            GgufCheckpoint.Write(Q4KWidths, checkpoint, gguf, q8_0: q8_0, kQuantMix: mix);
        float[] down, gate;
        using (GgufFile file = GgufFile.Open(gguf))
        {
            Assert.That(file.Tensors["blk.1.ffn_down_exps.weight"].Type, Is.EqualTo(GgmlType.Q6_K));
            Assert.That(file.Tensors["blk.1.ffn_gate_exps.weight"].Type, Is.EqualTo(mix));
            Assert.That(file.Tensors["output.weight"].Type, Is.EqualTo(GgmlType.Q6_K));
            Assert.That(file.Tensors["blk.1.attn_kv_a_mqa.weight"].Type, Is.EqualTo(mix));
            Assert.That(file.Tensors["blk.1.attn_output.weight"].Type, Is.EqualTo(q8_0 ? GgmlType.Q8_0 : GgmlType.BF16), "128 columns: not whole blocks");
            down = DecodedExpert(file, "blk.1.ffn_down_exps.weight", GgmlType.Q6_K, 2);
            gate = DecodedExpert(file, "blk.1.ffn_gate_exps.weight", mix, 2);
        }

        using DeepSeekV3Model model = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { CpuThreads = 1 });
        WeightFormat whole = mix == GgmlType.Q4_K ? WeightFormat.Q4K : WeightFormat.Gguf;
        Assert.That(model.Precision, Is.EqualTo(Precision.F32 with
        {
            Attention = WeightFormat.Gguf, DenseMlp = whole, SharedExperts = whole, RoutedExperts = WeightFormat.Gguf, LmHead = WeightFormat.Gguf,
        }));
        Assert.That(model.Precision.IsQuantized, "judged by the quantized criteria");
        var expert = ((Ftransformers.Backends.Cpu.CpuExpertBackend)model.ExpertBackend).Layer(1).Experts[2];
        Assert.That(expert.Down, Is.InstanceOf<Ftransformers.Backends.Cpu.KBlockWeightMatrix>());
        Assert.That(((Ftransformers.Backends.Cpu.KBlockWeightMatrix)expert.Down).Layout.Format, Is.EqualTo(Ftransformers.Kernels.KBlockFormat.Q6K));
        Assert.That(((Ftransformers.Backends.Cpu.KBlockWeightMatrix)expert.Gate).Layout.Format,
            Is.EqualTo(mix == GgmlType.Q4_K ? Ftransformers.Kernels.KBlockFormat.Q4K : Ftransformers.Kernels.KBlockFormat.Q5K));
        AssertRowsEqual(expert.Down, down);
        AssertRowsEqual(expert.Gate, gate);
        string kPart = mix == GgmlType.Q4_K ? "q4_k" : "q5_k";
        foreach (string part in (string[])["model.layers.1.mlp.experts.2.down_proj.q6_k", "lm_head.q6_k", $"model.embed_tokens.{kPart}"])
            Assert.That(model.Checkpoint.SourceOf(part), Is.EqualTo(gguf), $"{part} is read from the mapped file, not a copy");
        // Where the mix falls back to Q8_0, those blocks run as Q8_0 (copied into codes and F32 scales).
        Assert.That(model.Checkpoint.Contains("model.layers.1.self_attn.o_proj.qweight"), Is.EqualTo(q8_0));
        Assert.That(model.Checkpoint.SourceOf(q8_0 ? "model.layers.1.self_attn.o_proj.qweight" : "model.layers.1.self_attn.o_proj.weight"),
            q8_0 ? Is.Not.EqualTo(gguf) : Is.EqualTo(gguf));
        unsafe
        {
            Assert.That(expert.Down.Storage()[0].Start, Is.EqualTo((nint)model.Checkpoint.Pointer("model.layers.1.mlp.experts.2.down_proj.q6_k")), "held once, as stored");
        }

        using DeepSeekV3Model decoded = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { Precision = Precision.F32, CpuThreads = 1 });
        Assert.That(((Ftransformers.Backends.Cpu.CpuExpertBackend)decoded.ExpertBackend).Layer(1).Experts[2].Down, Is.InstanceOf<Ftransformers.Backends.Cpu.F32WeightMatrix>());
        LogitComparison comparison = AgainstF32(model, decoded);
        TestContext.Out.WriteLine($"{mix} mix: the kernels against the same weights in F32: mean KL {comparison.MeanKl:G3}, top-1 {comparison.Top1Agreement:P1}");
        Assert.That(comparison.MeanKl, Is.LessThanOrEqualTo(0.02));
        Assert.That(comparison.Top1Agreement, Is.GreaterThanOrEqualTo(0.80));
    }

    // `convert --from-gguf` writes a folder the engine maps in place: as stored, the same parts and the same logits as
    // the file; in a preset, the same as loading the file in that preset; config.json and the tokenizer from the file.
    [Test]
    public async Task ConvertFromGguf_GivesTheFilesLogits_AndItsTokenizer()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("q5_k_m.gguf"), asStored = dir.File("as-stored"), preset = dir.File("w8a8-q4_k");
        using (Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Q4KWidths, seed: 3))
            GgufCheckpoint.Write(Q4KWidths, checkpoint, gguf, q8_0: true, tokenizerDirectory: Fixtures.Tokenizer, kQuantMix: GgmlType.Q5_K);
        Assert.That(await Program.RunAsync(["convert", "--from-gguf", gguf, "--out", asStored, "--shard-size-gb", "0.001"], TextWriter.Null, TextWriter.Null), Is.Zero);
        Assert.That(await Program.RunAsync(["convert", "--from-gguf", gguf, "--out", preset, "--preset", "w8a8-q4_k"], TextWriter.Null, TextWriter.Null), Is.Zero);

        int[] tokens = [.. Enumerable.Range(0, 12).Select(i => (i * 37 + 5) % Q4KWidths.VocabSize)];
        float[] Logits(string model, Precision? precision = null)
        {
            using DeepSeekV3Model m = DeepSeekV3Model.Load(model, new ModelLoadOptions { CpuThreads = 1, Precision = precision });
            return m.Forward(tokens, new SequenceKvCache(m.Config), allPositions: true);
        }
        using (DeepSeekV3Model converted = DeepSeekV3Model.Load(asStored, new ModelLoadOptions { CpuThreads = 1 }))
        {
            Assert.That(converted.Checkpoint.Contains("model.layers.1.mlp.experts.2.down_proj.q6_k") && converted.Checkpoint.Contains("model.layers.1.mlp.experts.2.gate_proj.q5_k"),
                "the blocks as the file stores them");
            Assert.That(Directory.GetFiles(asStored, "*.safetensors"), Has.Length.GreaterThan(1), "sharded");
            using DeepSeekV3Model file = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { CpuThreads = 1 });
            Assert.That(converted.Precision, Is.EqualTo(file.Precision));
        }
        Assert.That(Logits(asStored), Is.EqualTo(Logits(gguf)), "as stored: the file's logits, bit for bit");
        Assert.That(Logits(preset), Is.EqualTo(Logits(gguf, Precision.W8A8Q4K)), "in a preset: loading the file in that preset");

        TokenizerDefinition written = TokenizerFiles.Read(asStored), original = TokenizerFiles.Read(Fixtures.Tokenizer);
        // Compared in id order (NUnit's order-free comparison is quadratic in 128K entries). A GGUF marks a token either
        // normal or added, so the added tokens that tokenizer.json also lists in its BPE vocabulary (BOS, EOS) are added only.
        var addedIds = original.AddedTokens.Select(a => a.Id).ToHashSet();
        Assert.That(written.Vocabulary.OrderBy(v => v.Value).ToArray(), Is.EqualTo(original.Vocabulary.Where(v => !addedIds.Contains(v.Value)).OrderBy(v => v.Value).ToArray()));
        Assert.That(written.Merges, Is.EqualTo(original.Merges));
        Assert.That(written.AddedTokens.Select(a => (a.Id, a.Content)).Order().ToArray(), Is.EqualTo(original.AddedTokens.Select(a => (a.Id, a.Content)).Order().ToArray()));
        Assert.That((written.BosToken, written.EosToken, written.ChatTemplate), Is.EqualTo((original.BosToken, original.EosToken, original.ChatTemplate)));
        var ours = DeepSeekTokenizer.Load(asStored);
        var reference = DeepSeekTokenizer.Load(Fixtures.Tokenizer);
        foreach (string text in (string[])["Hello, world! 12345", "<｜User｜>你好，世界<｜Assistant｜>", "  def f(x):\n\treturn x**2  "])
            Assert.That(ours.Encode(text), Is.EqualTo(reference.Encode(text)), text);
    }

    [Test]
    public async Task Convert_RefusesAmbiguousSources()
    {
        using var dir = new TempDirectory();
        var error = new StringWriter();
        Assert.That(await Program.RunAsync(["convert", "--out", dir.File("x")], TextWriter.Null, error), Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("--model FOLDER or --from-gguf FILE"));
        error = new StringWriter();
        Assert.That(await Program.RunAsync(["convert", "--model", Fixtures.TinyV3, "--out", dir.File("y")], TextWriter.Null, error), Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("--preset is required"));
        error = new StringWriter();
        Assert.That(await Program.RunAsync(["convert", "--from-gguf", dir.File("missing.gguf"), "--out", dir.File("z")], TextWriter.Null, error), Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("missing.gguf"));
    }

    // The memory plan of a GGUF counts what the backends hold tensor by tensor: blocks read in place at their size (the
    // experts' Q6_K down at 6.56 bits, their Q4_K at 4.5), no copy beside them; in a preset, the decoded copies that
    // are quantized again.
    [Test]
    public void HeldBytes_CountEachTensorAsTheBackendsHoldIt()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("q4_k_m.gguf");
        using (Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Q4KWidths, seed: 3))
            GgufCheckpoint.Write(Q4KWidths, checkpoint, gguf, kQuantMix: GgmlType.Q4_K);
        long experts = 0, others = 0, decodedKQuants = 0;
        using (GgufFile file = GgufFile.Open(gguf))
            foreach (GgufTensor t in file.Tensors.Values)
            {
                if (t.Name.Contains("_exps.", StringComparison.Ordinal))
                    experts += t.ByteLength;
                else
                    others += t.Dimensions.Length == 1 ? 4 * t.ElementCount : t.ByteLength;
                if (t.Type is GgmlType.Q4_K or GgmlType.Q6_K && t.Name != "token_embd.weight")
                    decodedKQuants += 4 * t.ElementCount;
            }
        foreach (int nodes in new[] { 1, 2 })
            Assert.That(GgufCheckpoint.HeldBytes(gguf, asked: null, nodes), Is.EqualTo((others, experts, 0L)), $"{nodes} node(s)");
        Ftransformers.Serving.MemoryPlan plan = Ftransformers.Serving.InferenceSession.PlanMemory(new Ftransformers.Generation.InferenceSessionOptions { Model = gguf, CpuThreads = 1, MaxTotalTokens = 64 });
        Assert.That((plan.WeightBytes, plan.ImageBytes), Is.EqualTo((others + experts, 0L)), "the session's memory plan");
        (long _, long routed, long beside) = GgufCheckpoint.HeldBytes(gguf, Precision.W8A8Int4, nodes: 1);
        Assert.That(beside, Is.EqualTo(decodedKQuants), "decoded copies beside the weights quantized from them");
        Assert.That(routed, Is.EqualTo(Ftransformers.Serving.MemoryPlan.WeightBytesOf(Q4KWidths, Precision.W8A8Int4, TensorDType.F32).RoutedExperts), "experts in the preset's INT4");
    }

    // With tied embeddings the head is the embedding loaded again: in a preset that quantizes it, a copy of its own, as
    // an untied head would be; as stored, the embedding itself, counted once.
    [Test]
    public void HeldBytes_CountATiedHeadAsTheLoaderMakesIt()
    {
        using var dir = new TempDirectory();
        string tied = dir.File("tied.gguf"), untied = dir.File("untied.gguf");
        using (Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Q4KWidths with { TieWordEmbeddings = true }, seed: 3))
            GgufCheckpoint.Write(Q4KWidths with { TieWordEmbeddings = true }, checkpoint, tied);
        using (Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Q4KWidths, seed: 3))
            GgufCheckpoint.Write(Q4KWidths, checkpoint, untied);
        using (GgufFile file = GgufFile.Open(tied))
            Assert.That(file.Tensors.ContainsKey("output.weight"), Is.False);
        Assert.That(GgufCheckpoint.HeldBytes(tied, Precision.W8A8Int4, 1), Is.EqualTo(GgufCheckpoint.HeldBytes(untied, Precision.W8A8Int4, 1)), "a head of its own in INT8");
        long bf16Head = 2L * Q4KWidths.VocabSize * Q4KWidths.HiddenSize;
        Assert.That(GgufCheckpoint.HeldBytes(tied, asked: null, 1).AttentionSide, Is.EqualTo(GgufCheckpoint.HeldBytes(untied, asked: null, 1).AttentionSide - bf16Head),
            "as stored, the embedding serves as the head in place");
    }

    // Q4_K experts keep the file's blocks (no second rounding): the matrix the kernel reads holds llama.cpp's values
    // exactly (Q4KRowsTests checks the kernel's products on such blocks), mapped once.
    [Test]
    public void Q4_KExperts_KeepTheirBlocks_AsLlamaCppDecodesThem()
    {
        using var dir = new TempDirectory();
        string q4k = dir.File("q8_0-q4_k.gguf"), q4_0 = dir.File("q8_0-q4_0.gguf");
        using Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Q4KWidths, seed: 3);
        GgufCheckpoint.Write(Q4KWidths, checkpoint, q4k, q8_0: true, q4_kExperts: true);
        GgufCheckpoint.Write(Q4KWidths, checkpoint, q4_0, q8_0: true, q4_0Experts: true);
        float[] expected;
        using (GgufFile file = GgufFile.Open(q4k))
        {
            Assert.That(file.Tensors["blk.1.ffn_down_exps.weight"].Type, Is.EqualTo(GgmlType.Q4_K));
            expected = DecodedExpert(file, "blk.1.ffn_down_exps.weight", GgmlType.Q4_K, 2);
        }

        using DeepSeekV3Model model = DeepSeekV3Model.Load(q4k, new ModelLoadOptions { CpuThreads = 1 });
        Assert.That(model.Precision, Is.EqualTo(Precision.F32 with
        {
            Attention = WeightFormat.W8A8, DenseMlp = WeightFormat.W8A8, SharedExperts = WeightFormat.W8A8, LmHead = WeightFormat.W8A8,
            RoutedExperts = WeightFormat.Q4K, Int8BlockSize = 32,
        }));
        var matrix = ((Ftransformers.Backends.Cpu.CpuExpertBackend)model.ExpertBackend).Layer(1).Experts[2].Down;
        Assert.That(matrix, Is.InstanceOf<Ftransformers.Backends.Cpu.KBlockWeightMatrix>());
        AssertRowsEqual(matrix, expected);
        unsafe
        {
            Assert.That(matrix.Storage()[0].Start, Is.EqualTo((nint)model.Checkpoint.Pointer("model.layers.1.mlp.experts.2.down_proj.q4_k")), "held once, as stored");
        }

        // Asked for the preset of Q4_K experts, the file's Q4_K blocks are kept as they are (not rounded again); the
        // other classes are quantized to the preset.
        using (DeepSeekV3Model preset = DeepSeekV3Model.Load(q4k, new ModelLoadOptions { Precision = Precision.W8A8Q4K, CpuThreads = 1 }))
        {
            Assert.That(preset.Precision, Is.EqualTo(Precision.W8A8Q4K));
            var kept = ((Ftransformers.Backends.Cpu.CpuExpertBackend)preset.ExpertBackend).Layer(1).Experts[2].Down;
            AssertRowsEqual(kept, expected);
            unsafe
            {
                Assert.That(kept.Storage()[0].Start, Is.EqualTo((nint)preset.Checkpoint.Pointer("model.layers.1.mlp.experts.2.down_proj.q4_k")));
            }
        }

        // Against the F32 model: Q4_K experts (a scale and min per 32 under 6 bits) err less than Q4_0's (a scale per 32).
        using DeepSeekV3Model f32 = DeepSeekV3Model.FromCheckpoint(Q4KWidths, checkpoint, new ModelLoadOptions { CpuThreads = 1 });
        using DeepSeekV3Model q4_0Model = DeepSeekV3Model.Load(q4_0, new ModelLoadOptions { CpuThreads = 1 });
        LogitComparison k = AgainstF32(model, f32), zero = AgainstF32(q4_0Model, f32);
        TestContext.Out.WriteLine($"against F32: Q8_0 + Q4_K experts mean KL {k.MeanKl:G3}, top-1 {k.Top1Agreement:P1}; Q8_0 + Q4_0 experts mean KL {zero.MeanKl:G3}, top-1 {zero.Top1Agreement:P1}");
        Assert.That(k.MeanKl, Is.LessThan(zero.MeanKl));
    }

    [Test]
    public void AGgufCarryingTheTokenizer_EncodesTheGoldenTexts_AndASessionTakesIt()
    {
        using var dir = new TempDirectory();
        string gguf = dir.File("tiny-v3-with-tokenizer.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(Fixtures.TinyV3))
            GgufCheckpoint.Write(DeepSeekV3Config.Load(Fixtures.TinyV3), checkpoint, gguf, tokenizerDirectory: Fixtures.Tokenizer);

        DeepSeekTokenizer fromGguf = DeepSeekTokenizer.Load(gguf), fromFolder = DeepSeekTokenizer.Load(Fixtures.Tokenizer);
        foreach (Ftransformers.Tests.Tokenization.GoldenEncodings.Case golden in Ftransformers.Tests.Tokenization.GoldenEncodings.Cases())
        {
            Assert.That(fromGguf.Encode(golden.Text), Is.EqualTo(golden.Ids), golden.Text);
            Assert.That(fromGguf.Decode(golden.Ids), Is.EqualTo(golden.Decoded), golden.Text);
        }
        Assert.That((fromGguf.VocabSize, fromGguf.BosTokenId, fromGguf.EosTokenId, fromGguf.ChatFormat),
            Is.EqualTo((fromFolder.VocabSize, fromFolder.BosTokenId, fromFolder.EosTokenId, fromFolder.ChatFormat)));
        Assert.That(Enumerable.Range(0, fromFolder.VocabSize).Where(id => fromGguf.IsAddedToken(id) != fromFolder.IsAddedToken(id)), Is.Empty);
        // llama.cpp's converter makes every <｜…｜> marker a control token; tokenizer.json flags only some special.
        string Text(int id) => System.Text.Encoding.UTF8.GetString(fromFolder.TokenBytes(id));
        Assert.That(Enumerable.Range(0, fromFolder.VocabSize).Where(id => fromGguf.IsSpecial(id) != (fromFolder.IsSpecial(id) || (fromFolder.IsAddedToken(id) && Text(id).StartsWith("<｜") && Text(id).EndsWith("｜>")))), Is.Empty);

        // A session on the file alone takes the tokenizer from it (the fixture's 1,024-id model is too small for it).
        var error = Assert.Throws<ArgumentException>(() => Ftransformers.Serving.InferenceSession.Load(gguf))!;
        Assert.That(error.Message, Does.Contain($"tokenizer's vocabulary ({fromFolder.VocabSize} ids)"));
    }

    [Test]
    public void ASyntheticArchitectureWithGroupsAndNoQLora_RoundTripsThroughGguf([Values] bool splitKvB)
    {
        // Head sizes that differ from each other and from the latent rank, so that MLA's metadata cannot be confused.
        DeepSeekV3Config config = SyntheticModels.Tiny with { QLoraRank = null, NGroup = 2, TopkGroup = 1, ScoringFunc = "softmax", NormTopkProb = false, KvLoraRank = 16, VHeadDim = 24 };
        using var dir = new TempDirectory();
        SyntheticCheckpoint.WriteDirectory(dir.Path, config, seed: 3, TensorDType.F32, shards: 1);
        string gguf = dir.File("model.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(dir.Path))
            GgufCheckpoint.Write(config, checkpoint, gguf, splitKvB: splitKvB);
        using (GgufFile file = GgufFile.Open(gguf))
            if (splitKvB)
            {
                // As llama.cpp writes MLA files: one latent head of rank + rope, the heads' sizes in the _mla keys.
                Assert.That(file.Metadata["deepseek2.attention.key_length"].AsInt64(), Is.EqualTo(16 + 16));
                Assert.That(file.Metadata["deepseek2.attention.key_length_mla"].AsInt64(), Is.EqualTo(32 + 16));
                Assert.That(file.Metadata["deepseek2.attention.value_length_mla"].AsInt64(), Is.EqualTo(24));
                Assert.That(file.Metadata["deepseek2.attention.head_count_kv"].AsInt64(), Is.EqualTo(1));
            }
        (DeepSeekV3Config read, Checkpoint fromGguf) = GgufCheckpoint.Open(gguf);
        using (fromGguf)
        using (Checkpoint original = Checkpoint.Open(dir.Path))
        {
            Assert.That(read with { EosTokenIds = config.EosTokenIds, BosTokenId = config.BosTokenId }, Is.EqualTo(config));
            Assert.That(fromGguf.TensorNames.Order(), Is.EqualTo(original.TensorNames.Order()));
            foreach (string name in original.TensorNames)
            {
                Assert.That(fromGguf.Info(name).Shape, Is.EqualTo(original.Info(name).Shape), name);
                Assert.That(fromGguf.Bytes(name).ToArray(), Is.EqualTo(original.Bytes(name).ToArray()), name);
            }
        }
    }

    [Test]
    public void WhatCannotBeLoaded_IsRefusedNamingIt()
    {
        using var dir = new TempDirectory();
        string other = dir.File("llama.gguf");
        new GgufWriter().Add("general.architecture", "llama").Save(other);
        Assert.That(Assert.Throws<InvalidDataException>(() => DeepSeekV3Model.Load(other))!.Message, Does.Contain("'llama'"));

        string gguf = dir.File("tiny.gguf");
        using (Checkpoint checkpoint = Checkpoint.Open(Fixtures.TinyV3))
            GgufCheckpoint.Write(DeepSeekV3Config.Load(Fixtures.TinyV3), checkpoint, gguf);
        using GgufFile file = GgufFile.Open(gguf);
        var quantized = new GgufWriter();
        foreach ((string key, GgufValue value) in file.Metadata)
            quantized.Add(key, value.Type, value.Value, value.ElementType);
        foreach (GgufTensor tensor in file.Tensors.Values)
            if (tensor.Name == "blk.0.attn_kv_b.weight")
                quantized.AddTensor(tensor.Name, GgmlType.IQ2_XXS, [256, tensor.ElementCount / 256], new byte[tensor.ElementCount / 256 * 66]);
            else
                quantized.AddTensor(tensor.Name, tensor.Type, tensor.Dimensions, file.GetBytes(tensor).ToArray());
        string q8 = dir.File("tiny-q8.gguf");
        quantized.Save(q8);
        Assert.That(Assert.Throws<InvalidDataException>(() => DeepSeekV3Model.Load(q8))!.Message, Does.Contain("'blk.0.attn_kv_b.weight' is IQ2_XXS"));
    }
}
