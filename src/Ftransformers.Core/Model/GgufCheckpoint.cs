using System.Runtime.InteropServices;
using Ftransformers.Formats;

namespace Ftransformers.Model;

/// <summary>
/// DeepSeek-V3/R1 in a GGUF file as llama.cpp names it (architecture <c>deepseek2</c>): the config from the
/// <c>deepseek2.*</c> metadata, the tensors under llama.cpp's names (<c>blk.N.attn_kv_b.weight</c>, experts stacked
/// in <c>blk.N.ffn_gate_exps.weight</c>), mapped to the Hugging Face names the backends load. What the engine computes
/// as stored is read in place from the mapped file: F32, F16 and BF16 tensors, and Q4_K, Q5_K and Q6_K blocks (as
/// <c>X.q4_k</c> / <c>X.q5_k</c> / <c>X.q6_k</c>, computed by their own kernels, tensor by tensor). What it converts
/// without rounding is copied: Q8_0 tensors become INT8 codes with a scale per block of 32, computed as llama.cpp
/// computes Q8_0 (<see cref="Precision.Int8BlockSize"/>), and routed experts that are all Q4_0 become INT4
/// (<see cref="Q4_0Experts"/>). Other Q4_0 tensors are decoded to F32 into the copy; other types are refused naming the
/// tensor.
/// </summary>
public static class GgufCheckpoint
{
    /// <summary>The <c>general.architecture</c> of DeepSeek-V2/V3/R1 files.</summary>
    public const string Architecture = "deepseek2";

    private const string P = Architecture + ".";

    /// <summary>
    /// Opens <paramref name="path"/> (a file, or the first of a split set) as a config and a checkpoint that computes
    /// with the file's own formats (<see cref="FileFormats"/>), which the config names as its converted precision.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">The file is malformed, not <c>deepseek2</c>, lacks a key or tensor, holds a type
    /// not loaded, or a tensor decoded to F32 would exceed 2 GiB.</exception>
    public static (DeepSeekV3Config Config, Checkpoint Checkpoint) Open(string path)
    {
        using GgufFile file = GgufFile.Open(path);
        DeepSeekV3Config config = ConfigOf(file);
        return (config, Image(file, config, KeepingOf(file, config, asked: null)));
    }

    /// <summary>
    /// Opens <paramref name="path"/> for a model loaded in the precision <paramref name="asked"/>: the blocks (K-quants,
    /// Q8_0) of a class the preset puts in Q4_K, and of the embedding (always as stored), are kept, so they are not
    /// rounded a second time; the rest is decoded to F32 and quantized at load. The config is not marked converted: the
    /// precision is the one asked.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">As <see cref="Open(string)"/>.</exception>
    public static (DeepSeekV3Config Config, Checkpoint Checkpoint) Open(string path, Precision asked)
    {
        using GgufFile file = GgufFile.Open(path);
        DeepSeekV3Config config = ConfigOf(file, keepBlocks: false);
        return (config, Image(file, config, KeepingOf(file, config, asked)));
    }

    /// <summary>
    /// What the backends will hold of <paramref name="path"/> loaded as stored (<paramref name="asked"/> null) or in a
    /// preset, tensor by tensor: the weights of the attention side and of the routed experts, and the bytes copied at
    /// load that stay beside them (a copy a weight is quantized from, or that the experts are copied out of onto
    /// <paramref name="nodes"/> NUMA nodes). Mapped bytes are not counted beside the weights: the OS may drop them.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">As <see cref="Open(string)"/>.</exception>
    public static (long AttentionSide, long RoutedExperts, long Beside) HeldBytes(string path, Precision? asked, int nodes)
    {
        using GgufFile file = GgufFile.Open(path);
        return HeldBytes(file, asked, nodes);
    }

    /// <summary>As <see cref="HeldBytes(string, Precision?, int)"/>, of a file already open.</summary>
    /// <exception cref="InvalidDataException">As <see cref="Open(string)"/>.</exception>
    public static (long AttentionSide, long RoutedExperts, long Beside) HeldBytes(GgufFile file, Precision? asked, int nodes)
    {
        DeepSeekV3Config config = ConfigOf(file, keepBlocks: asked == null);
        Keeping keeping = KeepingOf(file, config, asked);
        // The formats the loader applies to what is not kept as stored.
        Precision load = config.ConvertedPrecision ?? asked ?? Precision.F32;
        long attentionSide = 0, routed = 0, beside = 0;
        foreach ((GgufTensor tensor, string hf) in Placed(file, config))
        {
            Placement placement = PlacementOf(file, tensor, hf, keeping);
            long image = ImageBytesOf(tensor, placement);
            (long held, bool inPlace) = Held(tensor, placement, load.FormatOf(hf));
            bool expert = hf.Contains(".mlp.experts.", StringComparison.Ordinal);
            if (expert)
                routed += held;
            else
                attentionSide += held;
            // A copy is held beside the weights unless the weight is the copy itself, read in place on one node.
            if (placement is Placement.Q8_0Blocks or Placement.Q4_0AsInt4 or Placement.Decoded && (!inPlace || expert && nodes > 1))
                beside += image;
        }
        // Tied embeddings: the head is the embedding loaded again in the head's format, a copy of its own unless it is
        // computed where the embedding is.
        if (config.TieWordEmbeddings && !file.Tensors.ContainsKey("output.weight") && file.Tensors.TryGetValue("token_embd.weight", out GgufTensor? embedding)
            && Held(embedding, PlacementOf(file, embedding, "model.embed_tokens.weight", keeping), load.LmHead) is (long head, false))
            attentionSide += head;
        return (attentionSide, routed, beside);

        // A tensor's bytes as the loader holds it in `format`, and whether it is read in place (mapped, or from the copy).
        (long Bytes, bool InPlace) Held(GgufTensor tensor, Placement placement, WeightFormat format)
        {
            long image = ImageBytesOf(tensor, placement);
            if (format == WeightFormat.Gguf)
                format = WeightFormat.Native;
            if (tensor.Dimensions.Length == 1)
                return (4 * tensor.ElementCount, false); // vectors are read into F32 arrays
            if (placement is Placement.KBlocks or Placement.Q8_0Blocks or Placement.Q4_0AsInt4
                || format == WeightFormat.Native && (tensor.Type is GgmlType.F32 or GgmlType.BF16 || placement == Placement.Decoded)
                || format == WeightFormat.Bf16 && tensor.Type == GgmlType.BF16)
                return (image, true); // blocks, F32 and BF16 read in place, decoded F32 too
            return (load.MatrixBytes(tensor.Dimensions[1], tensor.Dimensions[0], format, TensorDType.F32), false);
        }
    }

    // How a tensor of the file reaches the backends.
    private enum Placement
    {
        /// <summary>F32, F16 or BF16, mapped as stored.</summary>
        InPlace,
        /// <summary>Q4_K, Q5_K or Q6_K blocks, mapped as <c>X.q4_k</c> / <c>X.q5_k</c> / <c>X.q6_k</c>.</summary>
        KBlocks,
        /// <summary>Q8_0 copied as INT8 codes and an F32 scale per block of 32.</summary>
        Q8_0Blocks,
        /// <summary>Q4_0 routed experts copied as INT4 of group 32 (this CPU's layout).</summary>
        Q4_0AsInt4,
        /// <summary>Decoded to F32 into the copy.</summary>
        Decoded,
    }

    // Which blocks are kept: whether a tensor keeps its K-quant or Q8_0 blocks (every tensor as stored; under a preset,
    // those of its Q4_K classes and the embedding), and the classes whose Q4_0 blocks become INT4 without rounding.
    private sealed record Keeping(Func<string, bool> Blocks, Precision Classes);

    private static Keeping KeepingOf(GgufFile file, DeepSeekV3Config config, Precision? asked) => asked == null
        ? new(_ => true, FileFormats(file, config) ?? Precision.F32)
        : new(hf => hf == "model.embed_tokens.weight" || asked.FormatOf(hf) == WeightFormat.Q4K, Precision.F32);

    // kv_b joined from a file's split k_b and v_b is decoded into the copy.
    private static Placement PlacementOf(GgufFile file, GgufTensor tensor, string hf, Keeping keeping) => !file.Tensors.ContainsKey(tensor.Name) ? Placement.Decoded : tensor.Type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 => Placement.InPlace,
        GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K when keeping.Blocks(hf) => Placement.KBlocks,
        GgmlType.Q8_0 when keeping.Blocks(hf) => Placement.Q8_0Blocks,
        GgmlType.Q4_0 when keeping.Classes.FormatOf(hf) == WeightFormat.Int4 => Placement.Q4_0AsInt4,
        _ => Placement.Decoded,
    };

    // Bytes a tensor takes where it is placed (mapped, or copied).
    private static long ImageBytesOf(GgufTensor t, Placement placement) => placement switch
    {
        Placement.InPlace or Placement.KBlocks or Placement.Q4_0AsInt4 => t.ByteLength,
        Placement.Q8_0Blocks => t.ElementCount + t.ElementCount / Kernels.Int8Layout.Q8BlockSize * sizeof(float),
        _ => 4 * t.ElementCount,
    };

    // Every tensor the backends load, under its Hugging Face name: the file's own, kv_b joined from k_b and v_b where
    // the file splits it (as an F32 stand-in), and each routed expert's slice of its layer's stacked tensors.
    private static IEnumerable<(GgufTensor Tensor, string Hf)> Placed(GgufFile file, DeepSeekV3Config config)
    {
        foreach ((string gguf, string hf) in Names(config))
        {
            if (file.Tensors.TryGetValue(gguf, out GgufTensor? tensor))
                yield return (tensor, hf);
            else if (gguf.EndsWith(".attn_kv_b.weight", StringComparison.Ordinal) && SplitKvBOf(file, gguf) is { } split)
                yield return (split.K with { Name = gguf, Type = GgmlType.F32, Dimensions = [config.KvLoraRank, (long)config.NumAttentionHeads * (config.QkNopeHeadDim + config.VHeadDim)],
                    ByteLength = 4L * config.KvLoraRank * config.NumAttentionHeads * (config.QkNopeHeadDim + config.VHeadDim) }, hf); // a stand-in: its name is not the file's
            else if (!(hf == "lm_head.weight" && config.TieWordEmbeddings))
                throw new InvalidDataException($"{file.Path}: tensor '{gguf}' ({hf}) is missing.");
        }
        for (int layer = config.FirstKDenseReplace; layer < config.NumHiddenLayers; layer++)
            foreach ((string gguf, string hfPart) in StackedExperts(layer))
            {
                GgufTensor tensor = file.Tensors.GetValueOrDefault(gguf) ?? throw new InvalidDataException($"{file.Path}: tensor '{gguf}' is missing.");
                if (tensor.Dimensions is not [_, _, long experts] || experts != config.NRoutedExperts)
                    throw new InvalidDataException($"{file.Path}: tensor '{gguf}' has shape [{string.Join(", ", tensor.Dimensions)}]; expected [in, out, {config.NRoutedExperts}].");
                long each = tensor.ByteLength / experts;
                for (int e = 0; e < experts; e++)
                    yield return (tensor with { Dimensions = tensor.Dimensions[..2], Offset = tensor.Offset + e * each, ByteLength = each },
                        $"model.layers.{layer}.mlp.experts.{e}.{hfPart}");
            }
    }

    // Newer llama.cpp files may also, or only, hold kv_b split per head into k_b (transposed) and v_b.
    private static (GgufTensor K, GgufTensor V)? SplitKvBOf(GgufFile file, string kvB) =>
        file.Tensors.TryGetValue(kvB.Replace("attn_kv_b", "attn_k_b"), out GgufTensor? k) && file.Tensors.TryGetValue(kvB.Replace("attn_kv_b", "attn_v_b"), out GgufTensor? v)
            ? (k, v) : null;

    // The checkpoint of a file: what is kept as stored mapped in place, the rest copied (converted or decoded).
    private static Checkpoint Image(GgufFile file, DeepSeekV3Config config, Keeping keeping)
    {
        var mapped = new List<(int Part, TensorInfo Tensor)>();
        var copies = new CopiedTensors(file.Path);
        var expected = new HashSet<string>(file.Tensors.Keys.Where(name => name.EndsWith(".attn_k_b.weight", StringComparison.Ordinal) || name.EndsWith(".attn_v_b.weight", StringComparison.Ordinal)),
            StringComparer.Ordinal);
        List<SafetensorsFile> images;
        try
        {
            foreach ((GgufTensor tensor, string hf) in Placed(file, config))
            {
                expected.Add(tensor.Name);
                if (!file.Tensors.ContainsKey(tensor.Name))
                {
                    // kv_b joined from its split halves.
                    (GgufTensor k, GgufTensor v) = SplitKvBOf(file, tensor.Name)!.Value;
                    copies.AddF32(hf, Reversed(tensor.Dimensions), JoinedKvB(file, k, v, config));
                    continue;
                }
                switch (PlacementOf(file, tensor, hf, keeping))
                {
                    case Placement.InPlace:
                        mapped.Add((tensor.Part, new TensorInfo(hf, DTypeOf(tensor.Type), Reversed(tensor.Dimensions), tensor.Offset, tensor.ByteLength)));
                        break;
                    case Placement.KBlocks:
                        long rows = tensor.Dimensions[1];
                        string part = tensor.Type switch
                        {
                            GgmlType.Q4_K => CheckpointConverter.Q4KBlocks,
                            GgmlType.Q5_K => CheckpointConverter.Q5KBlocks,
                            _ => CheckpointConverter.Q6KBlocks,
                        };
                        mapped.Add((tensor.Part, new TensorInfo(CheckpointConverter.PartName(hf, part), TensorDType.U8, [rows, tensor.ByteLength / rows], tensor.Offset, tensor.ByteLength)));
                        break;
                    case Placement.Q8_0Blocks:
                        AddQ8_0AsBlocks(copies, file, tensor, hf);
                        break;
                    case Placement.Q4_0AsInt4:
                        AddQ4_0AsInt4(copies, file, tensor, hf);
                        break;
                    default:
                        copies.AddF32(hf, Reversed(tensor.Dimensions), Decoded(file, tensor));
                        break;
                }
            }
            if (file.Tensors.Keys.FirstOrDefault(name => !expected.Contains(name)) is { } unknown)
                throw new InvalidDataException($"{file.Path}: tensor '{unknown}' is not one DeepSeek-V3 has.");
            List<SafetensorsFile> copied = copies.Images();
            images = [.. file.GiveMappings(mapped), .. copied];
        }
        catch
        {
            copies.Dispose();
            throw;
        }
        return Checkpoint.FromFiles(file.Path, images);
    }

    // The tensors copied at load (converted or decoded), as in-memory safetensors images of about 1 GiB each (a larger
    // tensor in one of its own), so that no image reaches the 2 GiB an array holds.
    private sealed class CopiedTensors(string path) : IDisposable
    {
        private const long ImageBytes = 1L << 30;
        private readonly List<SafetensorsFile> _images = [];
        private SafetensorsWriter _writer = new();
        private long _bytes;

        public void Add(string name, TensorDType dtype, long[] shape, byte[] data)
        {
            if (_bytes > 0 && _bytes + data.Length > ImageBytes)
                Flush();
            _writer.Add(name, dtype, shape, data);
            _bytes += data.Length;
        }

        public void AddF32(string name, long[] shape, float[] values) => Add(name, TensorDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

        public List<SafetensorsFile> Images()
        {
            if (_bytes > 0)
                Flush();
            return _images;
        }

        private void Flush()
        {
            _images.Add(SafetensorsFile.FromImage($"{path} (copy {_images.Count + 1})", _writer.ToImage()));
            _writer = new SafetensorsWriter();
            _bytes = 0;
        }

        public void Dispose()
        {
            foreach (SafetensorsFile image in _images)
                image.Dispose();
        }
    }

    /// <summary>
    /// Writes <paramref name="checkpoint"/> as a GGUF file llama.cpp reads: matrices kept in F32, F16 or BF16 (others as
    /// F32), norms and biases in F32, or with <paramref name="q8_0"/> every weight matrix in Q8_0 but the router.
    /// </summary>
    /// <param name="config">The model's config.</param>
    /// <param name="checkpoint">Its weights.</param>
    /// <param name="path">The file to write.</param>
    /// <param name="q8_0">Whether weight matrices are written in Q8_0.</param>
    /// <param name="tokenizerDirectory">A tokenizer folder (tokenizer.json, tokenizer_config.json) to carry in the file, so it is enough alone.</param>
    /// <param name="splitKvB">Whether kv_b is written split per head into attn_k_b and attn_v_b (in F32), as newer llama.cpp files hold it.</param>
    /// <exception cref="ArgumentException">The config has no GGUF form (MoE layers not every layer after the dense ones).</exception>
    /// <param name="q4_0Experts">Whether the routed experts are written in Q4_0.</param>
    /// <param name="q4_kExperts">Whether the routed experts are written in Q4_K (matrices whose columns are whole blocks of 256; others as without it).</param>
    /// <param name="kQuantMix">
    /// Q4_K or Q5_K: the matrices are written as a Q4_K_M or Q5_K_M file mixes K-quants: Q6_K for the routed experts'
    /// down, kv_b and lm_head, the given type for the others (the embedding too, the router aside), each where its
    /// columns are whole blocks of 256 (others as without it).
    /// </param>
    /// <exception cref="ArgumentException"><paramref name="kQuantMix"/> is another type.</exception>
    public static void Write(DeepSeekV3Config config, Checkpoint checkpoint, string path, bool q8_0 = false, string? tokenizerDirectory = null, bool splitKvB = false,
        bool q4_0Experts = false, bool q4_kExperts = false, GgmlType? kQuantMix = null)
    {
        if (kQuantMix is not (null or GgmlType.Q4_K or GgmlType.Q5_K))
            throw new ArgumentException($"A K-quant mix is of Q4_K or Q5_K, not {kQuantMix}.", nameof(kQuantMix));
        if (config.MoeLayerFreq != 1)
            throw new ArgumentException($"moe_layer_freq {config.MoeLayerFreq} has no GGUF form: deepseek2 files make every layer after the dense ones MoE.", nameof(config));
        var writer = new GgufWriter().Add("general.architecture", Architecture);
        foreach ((string key, GgufValueType type, object value) in MetadataOf(config, splitKvB))
            writer.Add(key, type, value);
        if (tokenizerDirectory != null)
            foreach ((string key, GgufValueType type, object value, GgufValueType? element) in Tokenization.GgufTokenizer.Metadata(tokenizerDirectory, config.VocabSize))
            {
                // The model's config already gave BOS and EOS.
                if ((key == "tokenizer.ggml.bos_token_id" && config.BosTokenId != null) || (key == "tokenizer.ggml.eos_token_id" && config.EosTokenIds.Count > 0))
                    continue;
                writer.Add(key, type, value, element);
            }
        // Matrices whose rows are whole Q8_0 blocks, except the router (llama.cpp keeps it in F32 too).
        bool Quantized(string hf) => q8_0 && checkpoint.Info(hf).Shape is [_, long columns] && columns % 32 == 0 && !hf.EndsWith("mlp.gate.weight", StringComparison.Ordinal);
        // The K-quant of a matrix in the Q4_K_M mix, if any.
        GgmlType? KQuant(string hf) => kQuantMix is { } mix && checkpoint.Info(hf).Shape is [_, long columns] && columns % Kernels.KBlockLayout.BlockValues == 0
            && !hf.EndsWith("mlp.gate.weight", StringComparison.Ordinal)
            ? hf.EndsWith("down_proj.weight", StringComparison.Ordinal) && hf.Contains(".mlp.experts.", StringComparison.Ordinal) || hf.EndsWith("kv_b_proj.weight", StringComparison.Ordinal) || hf == "lm_head.weight"
                ? GgmlType.Q6_K : mix
            : null;
        foreach ((string gguf, string hf) in Names(config))
            if (splitKvB && hf.EndsWith("kv_b_proj.weight", StringComparison.Ordinal))
                foreach ((string name, long[] dimensions, float[] values) in SplitKvB(checkpoint.ReadSingle(hf), gguf, config))
                    writer.AddTensor(name, GgmlType.F32, dimensions, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
            else if (checkpoint.Contains(hf))
            {
                // Norms and biases in F32, as llama.cpp's converter writes them (its CPU ops multiply F32 by F32 only).
                GgmlType type = KQuant(hf) ?? (Quantized(hf) ? GgmlType.Q8_0 : checkpoint.Info(hf).Shape.Length == 1 ? GgmlType.F32 : TypeOf(checkpoint, hf));
                writer.AddTensor(gguf, type, Reversed(checkpoint.Info(hf).Shape), BlocksOf(checkpoint, hf, type));
            }
        for (int layer = config.FirstKDenseReplace; layer < config.NumHiddenLayers; layer++)
            foreach ((string gguf, string hfPart) in StackedExperts(layer))
            {
                string first = $"model.layers.{layer}.mlp.experts.0.{hfPart}";
                long columns = checkpoint.Info(first).Shape[^1];
                bool quantized = Quantized(first), q4 = q4_0Experts && columns % 32 == 0, q4k = q4_kExperts && columns % Kernels.KBlockLayout.BlockValues == 0;
                GgmlType type = KQuant(first) ?? (q4k ? GgmlType.Q4_K : q4 ? GgmlType.Q4_0 : quantized ? GgmlType.Q8_0 : TypeOf(checkpoint, first));
                byte[] bytes = [.. Enumerable.Range(0, config.NRoutedExperts).SelectMany(e => BlocksOf(checkpoint, $"model.layers.{layer}.mlp.experts.{e}.{hfPart}", type))];
                writer.AddTensor(gguf, type, [.. Reversed(checkpoint.Info(first).Shape), config.NRoutedExperts], bytes);
            }
        writer.Save(path);
    }

    /// <summary>The model's config from a GGUF file's <c>deepseek2.*</c> metadata.</summary>
    /// <exception cref="InvalidDataException">The file is another architecture, or lacks a key.</exception>
    /// <param name="file">The open file.</param>
    /// <param name="keepBlocks">Whether the config names the formats kept as stored (<see cref="FileFormats"/>) as its converted precision.</param>
    public static DeepSeekV3Config ConfigOf(GgufFile file, bool keepBlocks = true)
    {
        try
        {
            DeepSeekV3Config config = ReadConfig(file);
            return keepBlocks && FileFormats(file, config) is { } kept ? config with { ConvertedPrecision = kept } : config;
        }
        catch (Exception e) when (e is OverflowException or InvalidCastException)
        {
            throw new InvalidDataException($"{file.Path}: a deepseek2 metadata value is out of range: {e.Message}", e);
        }
    }

    /// <summary>
    /// What a file whose routed experts are all Q4_0 computes with: the experts as INT4 of group 32 with a zero point of
    /// 8 (Q4_0's own values, repacked without rounding), the rest in F32 as stored or decoded.
    /// </summary>
    public static Precision Q4_0Experts { get; } = Precision.F32 with { RoutedExperts = WeightFormat.Int4, Int4 = new Quantization.Int4Format(32, Symmetric: true) };

    /// <summary>
    /// The formats a file computes with when no preset is asked, class by class (attention with kv_b whole, dense MLP,
    /// shared experts, routed experts, lm_head): all in Q8_0, W8A8 over its own blocks (<see cref="Precision.Int8BlockSize"/>
    /// 32); routed experts all in Q4_0, INT4 (<see cref="Q4_0Experts"/>); all in Q4_K, <see cref="WeightFormat.Q4K"/>;
    /// K-quants or Q8_0 mixed with other types (a Q4_K_M file's mix), <see cref="WeightFormat.Gguf"/>: each tensor's
    /// blocks as stored; the rest F32, as stored or decoded. Null when nothing is kept.
    /// </summary>
    public static Precision? FileFormats(GgufFile file, DeepSeekV3Config config)
    {
        // A class's format from its tensors' types (a tensor the file lacks, as kv_b split in two, is none of them).
        WeightFormat FormatOf(IEnumerable<string> names, bool routed)
        {
            GgmlType?[] types = [.. names.Select(n => file.Tensors.TryGetValue(n, out GgufTensor? t) ? t.Type : (GgmlType?)null)];
            bool All(GgmlType type) => types.Length > 0 && types.All(t => t == type);
            return All(GgmlType.Q8_0) ? WeightFormat.W8A8
                : routed && All(GgmlType.Q4_0) ? WeightFormat.Int4
                : All(GgmlType.Q4_K) ? WeightFormat.Q4K
                : types.Any(t => t is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_0) ? WeightFormat.Gguf
                : WeightFormat.Native;
        }
        // The GGUF names of the matrices of the one class that `only` marks.
        IEnumerable<string> Matrices(Precision only) => Names(config).Where(n => only.FormatOf(n.Hf) == WeightFormat.W8A8).Select(n => n.Gguf);
        IEnumerable<string> experts = Enumerable.Range(config.FirstKDenseReplace, config.NumHiddenLayers - config.FirstKDenseReplace).SelectMany(StackedExperts).Select(e => e.Gguf);
        Precision marked = Precision.F32;
        var kept = new Precision
        {
            Attention = FormatOf(Matrices(marked with { Attention = WeightFormat.W8A8 }), routed: false),
            DenseMlp = FormatOf(Matrices(marked with { DenseMlp = WeightFormat.W8A8 }), routed: false),
            SharedExperts = FormatOf(Matrices(marked with { SharedExperts = WeightFormat.W8A8 }), routed: false),
            RoutedExperts = FormatOf(experts, routed: true),
            LmHead = FormatOf(Matrices(marked with { LmHead = WeightFormat.W8A8 }), routed: false),
        };
        WeightFormat[] formats = [kept.Attention, kept.DenseMlp, kept.SharedExperts, kept.RoutedExperts, kept.LmHead];
        if (formats.All(f => f == WeightFormat.Native))
            return null;
        if (kept.RoutedExperts == WeightFormat.Int4)
            kept = kept with { Int4 = Q4_0Experts.Int4 };
        return formats.Contains(WeightFormat.W8A8) ? kept with { Int8BlockSize = Kernels.Int8Layout.Q8BlockSize } : kept;
    }

    private static DeepSeekV3Config ReadConfig(GgufFile file)
    {
        string architecture = file.Metadata.TryGetValue("general.architecture", out GgufValue? a) ? a.AsString() : "(none)";
        if (architecture != Architecture)
            throw new InvalidDataException($"{file.Path}: general.architecture is '{architecture}'; this engine runs '{Architecture}' files of DeepSeek-V3/R1.");
        int Int(string key) => checked((int)Required(key).AsInt64());
        int? Optional(string key) => file.Metadata.TryGetValue(P + key, out GgufValue? v) ? checked((int)v.AsInt64()) : null;
        double Number(string key, double fallback) => file.Metadata.TryGetValue(P + key, out GgufValue? v) ? v.AsDouble() : fallback;
        GgufValue Required(string key) => file.Metadata.TryGetValue(P + key, out GgufValue? v) ? v : throw new InvalidDataException($"{file.Path}: metadata '{P + key}' is missing.");

        int rope = Int("rope.dimension_count");
        int vocab = Optional("vocab_size") ?? (file.Tensors.TryGetValue("token_embd.weight", out GgufTensor? embeddings) ? checked((int)embeddings.Dimensions[^1])
            : throw new InvalidDataException($"{file.Path}: neither metadata '{P}vocab_size' nor tensor 'token_embd.weight' says the vocabulary size."));
        RopeScaling? scaling = null;
        if (file.Metadata.TryGetValue(P + "rope.scaling.type", out GgufValue? type) && type.AsString() == "yarn")
        {
            // llama.cpp keeps 0.1 * mscale_all_dim; DeepSeek's configs use the same value for mscale.
            double mscale = Number("rope.scaling.yarn_log_multiplier", 0) / 0.1;
            scaling = new RopeScaling(Number("rope.scaling.factor", 1), Int("rope.scaling.original_context_length"),
                Number("rope.scaling.yarn_beta_fast", 32), Number("rope.scaling.yarn_beta_slow", 1), mscale, mscale);
        }
        else if (file.Metadata.TryGetValue(P + "rope.scaling.type", out GgufValue? other) && other.AsString() != "none")
            throw new InvalidDataException($"{file.Path}: metadata '{P}rope.scaling.type' is '{other.AsString()}'; DeepSeek-V3 uses yarn.");
        long gating = file.Metadata.TryGetValue(P + "expert_gating_func", out GgufValue? g) ? g.AsInt64() : 1;
        var config = new DeepSeekV3Config
        {
            VocabSize = vocab,
            HiddenSize = Int("embedding_length"),
            IntermediateSize = Int("feed_forward_length"),
            MoeIntermediateSize = Int("expert_feed_forward_length"),
            NumHiddenLayers = Int("block_count"),
            FirstKDenseReplace = Int("leading_dense_block_count"),
            NumAttentionHeads = Int("attention.head_count"),
            NRoutedExperts = Int("expert_count"),
            NSharedExperts = Int("expert_shared_count"),
            NumExpertsPerTok = Int("expert_used_count"),
            NGroup = Optional("expert_group_count") ?? 1,
            TopkGroup = Optional("expert_group_used_count") ?? 1,
            ScoringFunc = gating switch
            {
                0 or 1 => "softmax",   // 0: unset, which llama.cpp reads as softmax
                2 => "sigmoid",
                _ => throw new InvalidDataException($"{file.Path}: metadata '{P}expert_gating_func' is {gating}; known: 1 (softmax), 2 (sigmoid)."),
            },
            NormTopkProb = file.Metadata.TryGetValue(P + "expert_weights_norm", out GgufValue? norm) && norm.AsBool(),
            RoutedScalingFactor = Number("expert_weights_scale", 1),
            QLoraRank = Optional("attention.q_lora_rank") is > 0 and var q ? q : null,
            KvLoraRank = Int("attention.kv_lora_rank"),
            // MLA files (k_b/v_b) keep the heads' own sizes in the _mla keys; key_length is then kv_lora_rank + rope.
            QkNopeHeadDim = (Optional("attention.key_length_mla") ?? Int("attention.key_length")) - rope,
            QkRopeHeadDim = rope,
            VHeadDim = Optional("attention.value_length_mla") ?? Int("attention.value_length"),
            MaxPositionEmbeddings = Int("context_length"),
            RopeTheta = Number("rope.freq_base", 10000),
            RopeScaling = scaling,
            RmsNormEps = Required("attention.layer_norm_rms_epsilon").AsDouble(),
            TieWordEmbeddings = !file.Tensors.ContainsKey("output.weight"),
            BosTokenId = file.Metadata.TryGetValue("tokenizer.ggml.bos_token_id", out GgufValue? bos) ? checked((int)bos.AsInt64()) : null,
            EosTokenIds = file.Metadata.TryGetValue("tokenizer.ggml.eos_token_id", out GgufValue? eos) ? [checked((int)eos.AsInt64())] : [],
        };
        try
        {
            config.Validate(file.Path);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException(e.Message, e);
        }
        return config;
    }

    private static IEnumerable<(string Key, GgufValueType Type, object Value)> MetadataOf(DeepSeekV3Config c, bool mla)
    {
        (string, GgufValueType, object) U(string key, long value) => (P + key, GgufValueType.UInt32, (uint)value);
        (string, GgufValueType, object) F(string key, double value) => (P + key, GgufValueType.Float32, (float)value);
        yield return U("vocab_size", c.VocabSize);
        yield return U("context_length", c.MaxPositionEmbeddings);
        yield return U("embedding_length", c.HiddenSize);
        yield return U("feed_forward_length", c.IntermediateSize);
        yield return U("expert_feed_forward_length", c.MoeIntermediateSize);
        yield return U("block_count", c.NumHiddenLayers);
        yield return U("leading_dense_block_count", c.FirstKDenseReplace);
        yield return U("attention.head_count", c.NumAttentionHeads);
        // As llama.cpp's converter writes MLA files (k_b/v_b): one latent "KV head" of kv_lora_rank + rope, the real
        // head sizes in the _mla keys.
        yield return U("attention.head_count_kv", mla ? 1 : c.NumAttentionHeads);
        yield return U("expert_count", c.NRoutedExperts);
        yield return U("expert_shared_count", c.NSharedExperts);
        yield return U("expert_used_count", c.NumExpertsPerTok);
        yield return U("expert_group_count", c.NGroup);
        yield return U("expert_group_used_count", c.TopkGroup);
        yield return U("expert_gating_func", c.ScoringFunc == "softmax" ? 1 : 2);
        yield return (P + "expert_weights_norm", GgufValueType.Bool, c.NormTopkProb);
        yield return F("expert_weights_scale", c.RoutedScalingFactor);
        if (c.QLoraRank is int q)
            yield return U("attention.q_lora_rank", q);
        yield return U("attention.kv_lora_rank", c.KvLoraRank);
        yield return U("attention.key_length", mla ? c.KvLoraRank + c.QkRopeHeadDim : c.QkNopeHeadDim + c.QkRopeHeadDim);
        yield return U("attention.value_length", mla ? c.KvLoraRank : c.VHeadDim);
        if (mla)
        {
            yield return U("attention.key_length_mla", c.QkNopeHeadDim + c.QkRopeHeadDim);
            yield return U("attention.value_length_mla", c.VHeadDim);
        }
        yield return U("rope.dimension_count", c.QkRopeHeadDim);
        yield return F("rope.freq_base", c.RopeTheta);
        yield return F("attention.layer_norm_rms_epsilon", c.RmsNormEps);
        if (c.RopeScaling is { } s)
        {
            if (s.Mscale != s.MscaleAllDim)
                throw new ArgumentException($"YaRN mscale {s.Mscale} differs from mscale_all_dim {s.MscaleAllDim}; GGUF keeps one of them.", nameof(c));
            yield return (P + "rope.scaling.type", GgufValueType.String, "yarn");
            yield return F("rope.scaling.factor", s.Factor);
            yield return U("rope.scaling.original_context_length", s.OriginalMaxPositionEmbeddings);
            yield return F("rope.scaling.yarn_log_multiplier", 0.1 * s.MscaleAllDim);
            yield return F("rope.scaling.yarn_beta_fast", s.BetaFast);
            yield return F("rope.scaling.yarn_beta_slow", s.BetaSlow);
        }
        if (c.BosTokenId is int bos)
            yield return ("tokenizer.ggml.bos_token_id", GgufValueType.UInt32, (uint)bos);
        if (c.EosTokenIds is [int eos, ..])
            yield return ("tokenizer.ggml.eos_token_id", GgufValueType.UInt32, (uint)eos);
    }

    // llama.cpp's name of each Hugging Face tensor, experts aside.
    private static IEnumerable<(string Gguf, string Hf)> Names(DeepSeekV3Config c)
    {
        yield return ("token_embd.weight", "model.embed_tokens.weight");
        yield return ("output_norm.weight", "model.norm.weight");
        yield return ("output.weight", "lm_head.weight");
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string b = $"blk.{i}.", h = $"model.layers.{i}.";
            yield return (b + "attn_norm.weight", h + "input_layernorm.weight");
            yield return (b + "ffn_norm.weight", h + "post_attention_layernorm.weight");
            if (c.QLoraRank != null)
            {
                yield return (b + "attn_q_a.weight", h + "self_attn.q_a_proj.weight");
                yield return (b + "attn_q_a_norm.weight", h + "self_attn.q_a_layernorm.weight");
                yield return (b + "attn_q_b.weight", h + "self_attn.q_b_proj.weight");
            }
            else
            {
                yield return (b + "attn_q.weight", h + "self_attn.q_proj.weight");
            }
            yield return (b + "attn_kv_a_mqa.weight", h + "self_attn.kv_a_proj_with_mqa.weight");
            yield return (b + "attn_kv_a_norm.weight", h + "self_attn.kv_a_layernorm.weight");
            yield return (b + "attn_kv_b.weight", h + "self_attn.kv_b_proj.weight");
            yield return (b + "attn_output.weight", h + "self_attn.o_proj.weight");
            if (!c.IsMoeLayer(i))
            {
                foreach (string part in (string[])["gate", "up", "down"])
                    yield return ($"{b}ffn_{part}.weight", $"{h}mlp.{part}_proj.weight");
                continue;
            }
            yield return (b + "ffn_gate_inp.weight", h + "mlp.gate.weight");
            yield return (b + "exp_probs_b.bias", h + "mlp.gate.e_score_correction_bias");
            if (c.NSharedExperts > 0)
                foreach (string part in (string[])["gate", "up", "down"])
                    yield return ($"{b}ffn_{part}_shexp.weight", $"{h}mlp.shared_experts.{part}_proj.weight");
        }
    }

    private static IEnumerable<(string Gguf, string HfPart)> StackedExperts(int layer) =>
        [($"blk.{layer}.ffn_gate_exps.weight", "gate_proj.weight"), ($"blk.{layer}.ffn_up_exps.weight", "up_proj.weight"), ($"blk.{layer}.ffn_down_exps.weight", "down_proj.weight")];

    private static TensorDType DTypeOf(GgmlType type) => type switch
    {
        GgmlType.F32 => TensorDType.F32,
        GgmlType.F16 => TensorDType.F16,
        GgmlType.BF16 => TensorDType.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Not a float type."),
    };

    // Q4_0 blocks (an f16 scale, then 16 bytes: weight j in the low nibble, j + 16 in the high) are INT4 group 32 with
    // zero point 8 in our layout, byte for byte: the nibbles become X.qweight and the scales X.scales.
    private static void AddQ4_0AsInt4(CopiedTensors writer, GgufFile file, GgufTensor tensor, string hf)
    {
        long cols = tensor.Dimensions[0], rows = tensor.Dimensions[1], blocks = rows * cols / 32;
        ReadOnlySpan<byte> source = file.GetBytes(tensor);
        var codes = new byte[blocks * 16];
        var scales = new byte[blocks * 2];
        for (long b = 0; b < blocks; b++)
        {
            source.Slice((int)(b * 18), 2).CopyTo(scales.AsSpan((int)(b * 2), 2));
            source.Slice((int)(b * 18 + 2), 16).CopyTo(codes.AsSpan((int)(b * 16), 16));
        }
        if (Int4FileLayouts.ForThisCpu == Int4FileLayout.RowGroups)
        {
            // As the x86 kernels read them, so that they are not held twice.
            var groups = Quantization.Int4RowGroups.From(Quantization.Int4Weights.CopyOf((int)rows, (int)cols, Q4_0Experts.Int4, codes,
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(scales), default));
            (long[] codeShape, long[] scaleShape) = Quantization.Int4RowGroups.FileShapes((int)rows, (int)cols);
            writer.Add(CheckpointConverter.PartName(hf, CheckpointConverter.RowGroupCodes), TensorDType.U8, codeShape, groups.Packed.ToArray());
            writer.Add(CheckpointConverter.PartName(hf, CheckpointConverter.RowGroupScales), TensorDType.F16, scaleShape,
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(groups.Scales).ToArray());
            return;
        }
        writer.Add(CheckpointConverter.PartName(hf, "qweight"), TensorDType.U8, [rows, cols / 2], codes);
        writer.Add(CheckpointConverter.PartName(hf, "scales"), TensorDType.F16, [rows, cols / 32], scales);
    }

    // Q8_0 blocks (an f16 scale, then 32 signed bytes) as INT8 codes X.qweight [rows, cols] and an F32 scale per block
    // X.scales [rows, cols / 32]: the same values, which the block-scaled INT8 kernels compute with.
    private static void AddQ8_0AsBlocks(CopiedTensors writer, GgufFile file, GgufTensor tensor, string hf)
    {
        long cols = tensor.Dimensions[0], rows = tensor.Dimensions[1], blocks = rows * cols / Kernels.Int8Layout.Q8BlockSize;
        ReadOnlySpan<byte> source = file.GetBytes(tensor);
        var codes = new byte[blocks * 32];
        var scales = new float[blocks];
        for (long b = 0; b < blocks; b++)
        {
            scales[b] = (float)System.Buffers.Binary.BinaryPrimitives.ReadHalfLittleEndian(source.Slice((int)(b * 34), 2));
            source.Slice((int)(b * 34 + 2), 32).CopyTo(codes.AsSpan((int)(b * 32), 32));
        }
        writer.Add(CheckpointConverter.PartName(hf, "qweight"), TensorDType.I8, [rows, cols], codes);
        writer.Add(CheckpointConverter.PartName(hf, "scales"), TensorDType.F32, [rows, blocks / rows],
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(scales.AsSpan()).ToArray());
    }

    // kv_b_proj [heads * (nope + v), kv_lora] from k_b [heads, kv_lora, nope] (kv_b's first nope rows of each head,
    // transposed) and v_b [heads, v, kv_lora] (its last v rows), as llama.cpp's converter splits it.
    private static float[] JoinedKvB(GgufFile file, GgufTensor k, GgufTensor v, DeepSeekV3Config c)
    {
        int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, vDim = c.VHeadDim, rank = c.KvLoraRank;
        if (!k.Dimensions.SequenceEqual(new long[] { nope, rank, heads }) || !v.Dimensions.SequenceEqual(new long[] { rank, vDim, heads }))
            throw new InvalidDataException($"{file.Path}: '{k.Name}' [{string.Join(", ", k.Dimensions)}] and '{v.Name}' [{string.Join(", ", v.Dimensions)}] " +
                $"are not kv_b split for {heads} heads of {nope} + {vDim} from rank {rank}.");
        float[] kb = Decoded(file, k), vb = Decoded(file, v);
        var joined = new float[heads * (nope + vDim) * rank];
        for (int h = 0; h < heads; h++)
        {
            int row0 = h * (nope + vDim);
            for (int r = 0; r < nope; r++)
                for (int col = 0; col < rank; col++)
                    joined[(row0 + r) * rank + col] = kb[(h * rank + col) * nope + r];
            vb.AsSpan(h * vDim * rank, vDim * rank).CopyTo(joined.AsSpan((row0 + nope) * rank));
        }
        return joined;
    }

    private static IEnumerable<(string Name, long[] Dimensions, float[] Values)> SplitKvB(float[] kvB, string gguf, DeepSeekV3Config c)
    {
        int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, vDim = c.VHeadDim, rank = c.KvLoraRank;
        float[] kb = new float[heads * rank * nope], vb = new float[heads * vDim * rank];
        for (int h = 0; h < heads; h++)
        {
            int row0 = h * (nope + vDim);
            for (int r = 0; r < nope; r++)
                for (int col = 0; col < rank; col++)
                    kb[(h * rank + col) * nope + r] = kvB[(row0 + r) * rank + col];
            kvB.AsSpan((row0 + nope) * rank, vDim * rank).CopyTo(vb.AsSpan(h * vDim * rank));
        }
        yield return (gguf.Replace("attn_kv_b", "attn_k_b"), [nope, rank, heads], kb);
        yield return (gguf.Replace("attn_kv_b", "attn_v_b"), [rank, vDim, heads], vb);
    }

    private static float[] Decoded(GgufFile file, GgufTensor tensor)
    {
        if (!GgmlTypes.Decoded.Contains(tensor.Type))
            throw new InvalidDataException($"{file.Path}: tensor '{tensor.Name}' is {tensor.Type}; GGUF tensors of {string.Join(", ", GgmlTypes.Decoded)} are read.");
        // Its F32 bytes are copied into an image whose header must fit beside them in an array.
        if (4 * tensor.ElementCount > Array.MaxLength - (1 << 20))
            throw new InvalidDataException($"{file.Path}: tensor '{tensor.Name}' ({tensor.Type}) takes {4 * tensor.ElementCount / 1e9:F1} GB decoded to F32, more than the " +
                $"2 GiB one decoded tensor may take; {tensor.Type} tensors of that size are not loaded yet.");
        var values = new float[tensor.ElementCount];
        GgmlTypes.Dequantize(tensor.Type, file.GetBytes(tensor), values);
        return values;
    }

    // A matrix's bytes as a tensor of `type`: quantized into its blocks, or as stored (F32 from another float type).
    private static byte[] BlocksOf(Checkpoint checkpoint, string name, GgmlType type) => type switch
    {
        GgmlType.Q4_K => Quantization.Q4KQuantizer.Quantize(checkpoint.ReadSingle(name), (int)checkpoint.Info(name).Shape[0], (int)checkpoint.Info(name).Shape[1]),
        GgmlType.Q5_K => Quantization.Q4KQuantizer.Quantize(checkpoint.ReadSingle(name), (int)checkpoint.Info(name).Shape[0], (int)checkpoint.Info(name).Shape[1], Kernels.KBlockFormat.Q5K),
        GgmlType.Q6_K => Quantization.Q6KQuantizer.Quantize(checkpoint.ReadSingle(name), (int)checkpoint.Info(name).Shape[0], (int)checkpoint.Info(name).Shape[1]),
        GgmlType.Q4_0 => Q4_0Of(checkpoint, name),
        GgmlType.Q8_0 => Q8_0Of(checkpoint, name),
        _ => BytesOf(checkpoint, name, type),
    };

    private static byte[] Q8_0Of(Checkpoint checkpoint, string name) => Blocks(checkpoint, name, 34, Kernels.GgmlBlocks.QuantizeQ8_0);

    private static byte[] Q4_0Of(Checkpoint checkpoint, string name) => Blocks(checkpoint, name, 18, Kernels.GgmlBlocks.QuantizeQ4_0);

    // A tensor quantized into blocks of 32 values of blockBytes each.
    private static byte[] Blocks(Checkpoint checkpoint, string name, int blockBytes, QuantizeBlocks quantize)
    {
        float[] values = checkpoint.ReadSingle(name);
        var blocks = new byte[values.Length / 32 * blockBytes];
        quantize(values, blocks);
        return blocks;
    }

    private delegate void QuantizeBlocks(ReadOnlySpan<float> values, Span<byte> blocks);

    private static long[] Reversed(long[] shape) => [.. shape.Reverse()];

    private static GgmlType TypeOf(Checkpoint checkpoint, string name) => checkpoint.Info(name).DType switch
    {
        TensorDType.BF16 => GgmlType.BF16,
        TensorDType.F16 => GgmlType.F16,
        _ => GgmlType.F32,
    };

    private static byte[] BytesOf(Checkpoint checkpoint, string name, GgmlType type) =>
        type == GgmlType.F32 && checkpoint.Info(name).DType != TensorDType.F32
            ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(checkpoint.ReadSingle(name).AsSpan()).ToArray()
            : TypeOf(checkpoint, name) == type ? checkpoint.Bytes(name).ToArray()
            : throw new InvalidDataException($"{checkpoint.Location}: tensor '{name}' is {checkpoint.Info(name).DType}, unlike the other experts of its layer.");
}
