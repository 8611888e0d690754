using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Ftransformers.Formats;
using Ftransformers.Generation;
using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Quantization;

namespace Ftransformers.Serving;

/// <summary>
/// What a session will hold, worked out from the architecture and options before anything large is loaded: the
/// weights (the routed experts split across the NUMA nodes in proportion to their threads, the rest with the first
/// node), the KV cache pool and the step's scratch, against the memory the machine (or the container) has. A plan
/// that does not fit is refused with its numbers; an unset pool size is chosen here.
/// </summary>
public sealed record MemoryPlan
{
    /// <summary>Bytes of weights each node holds: node 0 the attention side and its share of the routed experts.</summary>
    public required IReadOnlyList<long> WeightBytesPerNode { get; init; }

    /// <summary>Tokens the KV cache pool holds (MaxTotalTokens, or the size chosen from memory); its pages may hold a few more.</summary>
    public required long KvTokens { get; init; }

    /// <summary>Bytes of the KV cache pool.</summary>
    public required long KvBytes { get; init; }

    /// <summary>Bytes of activations and buffers a step of the largest batch uses, estimated.</summary>
    public required long ScratchBytes { get; init; }

    /// <summary>The machine's memory: physical memory or the container's limit.</summary>
    public required long MachineBytes { get; init; }

    /// <summary>What the process held when the plan was made (with a loaded model, its weights).</summary>
    public required long HeldBytes { get; init; }

    /// <summary>The share of <see cref="MachineBytes"/> the process may take (<c>--mem-fraction-static</c>; 1 when unset).</summary>
    public required double Fraction { get; init; }

    /// <summary>What the plan may take: the fraction of the machine's memory, less what the process holds.</summary>
    public long AvailableBytes => Math.Max(0, (long)(Fraction * MachineBytes) - HeldBytes);

    /// <summary>Weights on all nodes.</summary>
    public long WeightBytes => WeightBytesPerNode.Sum();

    /// <summary>
    /// A checkpoint image held in memory beside the weights computed from it (a synthetic model's, whose copied parts
    /// cannot be released, or a GGUF's decoded copy); zero for checkpoint folders, whose mapped originals the OS may drop.
    /// </summary>
    public long ImageBytes { get; init; }

    /// <summary>Everything the plan holds.</summary>
    public long TotalBytes => WeightBytes + ImageBytes + KvBytes + ScratchBytes;

    /// <summary>Whether it fits the share of memory it may take.</summary>
    public bool Fits => TotalBytes <= AvailableBytes;

    /// <summary>
    /// The plan for serving <paramref name="config"/> with <paramref name="options"/>, its weights stored as
    /// <paramref name="stored"/> (BF16, F32, or FP8 for checkpoints that are converted at load) and split over
    /// <paramref name="nodeThreads"/> (threads per NUMA node; one node when null).
    /// </summary>
    /// <param name="config">The architecture, the context already cut to the session's.</param>
    /// <param name="options">The session's options.</param>
    /// <param name="stored">How the checkpoint stores its weights.</param>
    /// <param name="nodeThreads">Threads per NUMA node; one node when null.</param>
    /// <param name="weightsLoaded">The model is loaded already: its weights are in what the process holds, so the plan adds none.</param>
    /// <param name="machineBytes">The memory to plan within, nothing held; null: the machine's (or container's), less what the process holds.</param>
    /// <param name="imageBytes">A checkpoint image held in memory beside the weights (see <see cref="ImageBytes"/>).</param>
    /// <param name="weightBytes">The weights' bytes where the checkpoint tells them tensor by tensor (a GGUF file's); null: from the config and formats.</param>
    public static MemoryPlan Create(DeepSeekV3Config config, InferenceSessionOptions options, TensorDType stored, IReadOnlyList<int>? nodeThreads = null,
        bool weightsLoaded = false, long? machineBytes = null, long imageBytes = 0, (long AttentionSide, long RoutedExperts)? weightBytes = null)
    {
        Precision precision = config.ConvertedPrecision ?? options.Precision ?? Precision.F32;
        int[] threads = nodeThreads is { Count: > 0 } given ? [.. given] : [1];
        (long attentionSide, long routed) = weightsLoaded ? (0, 0) : weightBytes ?? WeightBytesOf(config, precision, stored);
        var perNode = new long[threads.Length];
        long before = 0, total = threads.Sum();
        for (int n = 0; n < threads.Length; n++)
        {
            perNode[n] = routed * (before + threads[n]) / total - routed * before / total;
            before += threads[n];
        }
        perNode[0] += attentionSide;

        long machine = machineBytes ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes, held = machineBytes != null ? 0 : Environment.WorkingSet;
        double fraction = options.MemoryFractionStatic ?? 1;
        long available = Math.Max(0, (long)(fraction * machine) - held);
        int context = Math.Min(options.ContextLength ?? config.MaxPositionEmbeddings, config.MaxPositionEmbeddings);
        long scratch = ScratchBytesOf(config, options, context);
        long bytesPerToken = KvCachePool.BytesPerToken(config.NumHiddenLayers, config.KvLoraRank + config.QkRopeHeadDim, options.KvCacheDType);
        long tokens = options.MaxTotalTokens ?? PoolTokens(available, options.MemoryFractionStatic != null, perNode.Sum() + imageBytes + scratch, bytesPerToken, context);
        // The pool holds whole pages.
        long pageSize = options.KvCachePageSize, slots = (tokens + pageSize - 1) / pageSize * pageSize;
        return new MemoryPlan
        {
            WeightBytesPerNode = perNode,
            ImageBytes = imageBytes,
            KvTokens = tokens,
            KvBytes = slots * bytesPerToken,
            ScratchBytes = scratch,
            MachineBytes = machine,
            HeldBytes = held,
            Fraction = fraction,
        };
    }

    // Unset: what the static fraction leaves beside the weights and scratch, or a quarter of what they leave, within
    // [min(4096, context), context] (the full context in F32 would reserve ~23 GB for DeepSeek-V3).
    private static long PoolTokens(long available, bool staticFraction, long weightsAndScratch, long bytesPerToken, int context)
    {
        long budget = staticFraction ? available - weightsAndScratch : (available - weightsAndScratch) / 4;
        return Math.Clamp(Math.Max(0, budget) / bytesPerToken, Math.Min(4096, context), context);
    }

    /// <summary>Bytes of the attention side's weights and of all routed experts, as the CPU backends store them.</summary>
    public static (long AttentionSide, long RoutedExperts) WeightBytesOf(DeepSeekV3Config c, Precision precision, TensorDType stored)
    {
        long[] bytes = ClassBytes(c, precision, stored);
        return (bytes.Sum() - bytes[(int)WeightClass.RoutedExperts], bytes[(int)WeightClass.RoutedExperts]);
    }

    // The classes of weights a precision sets formats for, plus the embedding and routers (always native).
    private enum WeightClass { Embedding, Attention, DenseMlp, Router, SharedExperts, RoutedExperts, LmHead }

    private static WeightFormat FormatOf(WeightClass c, Precision p) => c switch
    {
        WeightClass.Attention => p.Attention,
        WeightClass.DenseMlp => p.DenseMlp,
        WeightClass.SharedExperts => p.SharedExperts,
        WeightClass.RoutedExperts => p.RoutedExperts,
        WeightClass.LmHead => p.LmHead,
        _ => WeightFormat.Native,
    };

    // Bytes of each class as the CPU backends store it, norms with the parts they belong to.
    private static long[] ClassBytes(DeepSeekV3Config c, Precision precision, TensorDType stored)
    {
        long hidden = c.HiddenSize, heads = c.NumAttentionHeads;
        long Matrix(long rows, long cols, WeightFormat format) => precision.MatrixBytes(rows, cols, format, stored);
        long Vector(long length) => length * sizeof(float);
        long Mlp(long width, WeightFormat format) => 3 * Matrix(width, hidden, format);

        var bytes = new long[Enum.GetValues<WeightClass>().Length];
        WeightFormat attention = precision.Attention;
        long q = c.QLoraRank is int qRank
            ? Matrix(qRank, hidden, attention) + Vector(qRank) + Matrix(heads * c.QkHeadDim, qRank, attention)
            : Matrix(heads * c.QkHeadDim, hidden, attention);
        long perLayerAttention = Vector(hidden) + q + Matrix(c.KvLoraRank + c.QkRopeHeadDim, hidden, attention) + Vector(c.KvLoraRank)
            + Matrix(heads * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank, attention) + Matrix(hidden, heads * c.VHeadDim, attention);
        bytes[(int)WeightClass.Embedding] = Matrix(c.VocabSize, hidden, WeightFormat.Native);
        bytes[(int)WeightClass.LmHead] = Vector(hidden) + Matrix(c.VocabSize, hidden, precision.LmHead);
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            bytes[(int)WeightClass.Attention] += perLayerAttention;
            if (!c.IsMoeLayer(i))
            {
                bytes[(int)WeightClass.DenseMlp] += Vector(hidden) + Mlp(c.IntermediateSize, precision.DenseMlp);
                continue;
            }
            bytes[(int)WeightClass.Router] += Vector(hidden) + Matrix(c.NRoutedExperts, hidden, WeightFormat.Native) + Vector(c.NRoutedExperts);
            bytes[(int)WeightClass.SharedExperts] += c.NSharedExperts > 0 ? Mlp((long)c.MoeIntermediateSize * c.NSharedExperts, precision.SharedExperts) : 0;
            bytes[(int)WeightClass.RoutedExperts] += c.NRoutedExperts * Mlp(c.MoeIntermediateSize, precision.RoutedExperts);
        }
        return bytes;
    }

    /// <summary>
    /// What a checkpoint image held in memory (a synthetic model's; GGUF files are planned by <see cref="GgufCheckpoint.HeldBytes(string, Precision?, int)"/>) adds beside the weights: the
    /// image's bytes of every class the backends copy rather than read in place (quantized or decoded at load; with
    /// several NUMA nodes the routed experts, which are copied onto their nodes).
    /// </summary>
    /// <param name="config">The architecture.</param>
    /// <param name="precision">The formats the model computes with.</param>
    /// <param name="image">How the image stores unconverted weights (BF16).</param>
    /// <param name="nodes">NUMA nodes the experts are split across.</param>
    public static long ImageBytesBesideCopies(DeepSeekV3Config config, Precision precision, TensorDType image, int nodes)
    {
        // A converted image is in the computed formats already (and in this CPU's INT4 layout): read in place.
        Precision imageFormats = config.ConvertedPrecision ?? Precision.F32;
        long[] imageBytes = ClassBytes(config, imageFormats, image);
        long total = 0;
        foreach (WeightClass c in Enum.GetValues<WeightClass>())
        {
            WeightFormat format = FormatOf(c, precision);
            bool inPlace = config.ConvertedPrecision != null
                || format == WeightFormat.Native || (format == WeightFormat.Bf16 && image == TensorDType.BF16);
            if (!inPlace || (c == WeightClass.RoutedExperts && nodes > 1))
                total += imageBytes[(int)c];
        }
        return total;
    }


    // A step of the most tokens (a chunk, or without chunking the longest prompt the context allows, plus a decode
    // token per running request): per token its hidden states and their copies, queries, kv_a output and attended
    // values, the widest MLP's gate and up, and its routed experts' gate and up; attention scores (held within 32 MB);
    // and every running request's logits.
    private static long ScratchBytesOf(DeepSeekV3Config c, InferenceSessionOptions options, int context)
    {
        long tokens = Math.Min(options.PrefillTokensPerStep, context) + options.MaxRunningRequests;
        long widest = Math.Max(c.IntermediateSize, (long)c.MoeIntermediateSize * Math.Max(1, c.NSharedExperts));
        long perToken = 5L * c.HiddenSize + (long)c.NumAttentionHeads * (c.QkHeadDim + c.VHeadDim) + c.KvLoraRank + c.QkRopeHeadDim
            + 2 * widest + 2L * c.NumExpertsPerTok * c.MoeIntermediateSize;
        return tokens * perToken * sizeof(float) + (32L << 20) + 2L * options.MaxRunningRequests * c.VocabSize * sizeof(float);
    }

    /// <summary>How the weights of a checkpoint folder are stored, from its config.json (FP8 when it has an fp8 quantization_config).</summary>
    public static TensorDType StoredDType(string directory)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            return TensorDType.BF16;
        JsonNode? root = JsonNode.Parse(File.ReadAllText(path));
        if (root?["quantization_config"]?["quant_method"]?.GetValue<string>() == "fp8")
            return TensorDType.F8_E4M3;
        return root?["torch_dtype"]?.GetValue<string>() is "float32" ? TensorDType.F32 : TensorDType.BF16;
    }

    /// <summary>The plan as lines for a log: what each part takes, and the memory it is held against.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"Memory plan: {Gb(TotalBytes)} of {Gb(AvailableBytes)} available ({(Fraction < 1 ? string.Create(c, $"{Fraction:P0} of ") : "")}{Gb(MachineBytes)}, less {Gb(HeldBytes)} the process holds):");
        for (int n = 0; n < WeightBytesPerNode.Count; n++)
            text.AppendLine(c, $"  weights, node {n}: {Gb(WeightBytesPerNode[n])}{(n == 0 ? " (attention side and its share of the routed experts)" : " (its share of the routed experts)")}");
        if (ImageBytes > 0)
            text.AppendLine(c, $"  checkpoint image held in memory: {Gb(ImageBytes)} (a synthetic model's or a GGUF's copy, beside the weights made from it)");
        text.AppendLine(c, $"  KV cache pool: {KvTokens} tokens, {Gb(KvBytes)}");
        text.Append(c, $"  scratch (largest step, estimated): {Gb(ScratchBytes)}");
        return text.ToString();
    }

    private static string Gb(long bytes) => (bytes / 1e9).ToString(bytes < 1e8 ? "F3" : "F1", CultureInfo.InvariantCulture) + " GB";

    /// <summary>Throws when the plan does not fit, naming what to change.</summary>
    /// <exception cref="ArgumentException">Weights, KV pool and scratch exceed the memory they may take.</exception>
    public void EnsureFits(InferenceSessionOptions options)
    {
        if (Fits)
            return;
        // Name the knob of the largest part.
        string fix = ScratchBytes > Math.Max(KvBytes, WeightBytes) && options.ChunkedPrefillSize == -1
            ? "prefill in chunks (ChunkedPrefillSize, --chunked-prefill-size) or shorten ContextLength (--context-length): without chunking a step may hold a whole prompt"
            : options.MaxTotalTokens != null && KvBytes >= WeightBytes
                ? $"lower MaxTotalTokens (--max-total-tokens {options.MaxTotalTokens})"
                : "use a smaller precision preset or a machine with more memory";
        throw new ArgumentException($"The model does not fit: weights {Gb(WeightBytes)}{(ImageBytes > 0 ? $" + checkpoint image {Gb(ImageBytes)}" : "")} + KV cache pool {Gb(KvBytes)} ({KvTokens} tokens) + scratch {Gb(ScratchBytes)} = " +
            $"{Gb(TotalBytes)}, more than the {Gb(AvailableBytes)} available{(Fraction < 1 ? $" at MemoryFractionStatic {Fraction.ToString(CultureInfo.InvariantCulture)}" : "")}; {fix}.",
            fix.StartsWith("prefill", StringComparison.Ordinal) ? nameof(options.ChunkedPrefillSize)
                : fix.StartsWith("lower", StringComparison.Ordinal) ? nameof(options.MaxTotalTokens) : nameof(options.Precision));
    }
}
