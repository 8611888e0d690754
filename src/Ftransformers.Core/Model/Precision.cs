using System.Text.Json.Nodes;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>How one class of weights is stored in memory and multiplied.</summary>
public enum WeightFormat
{
    /// <summary>As the checkpoint stores it: BF16 and F32 read in place, FP8 and F16 decoded to F32; F32 compute.</summary>
    Native,
    /// <summary>Rounded to BF16, widened to F32 in the kernel.</summary>
    Bf16,
    /// <summary>INT8 weights per output channel, activations quantized to INT8 per token.</summary>
    W8A8,
    /// <summary>Grouped INT4 weights (see <see cref="Precision.Int4"/>), activations quantized to INT8 per 32-block.</summary>
    Int4,
    /// <summary>
    /// GGUF's Q4_K: blocks of 256 weights in 4 bits with a 6-bit scale and min per 32 under F16 super-scales (4.5 bits
    /// per weight); activations quantized to INT8 per 32-block. Matrices need a multiple of 256 columns.
    /// </summary>
    Q4K,
    /// <summary>
    /// A GGUF file's own blocks, tensor by tensor: Q4_K and Q6_K computed by their kernels (activations quantized to INT8
    /// per 32-block), other tensors of the class as stored. Names a class of a GGUF file that mixes them (a Q4_K_M file's
    /// experts); no preset quantizes to it.
    /// </summary>
    Gguf,
}

/// <summary>
/// The weight format of each tensor class. Embeddings, norms and the router stay as stored (F32 compute):
/// they are small and the routing decision is sensitive to them.
/// </summary>
public sealed record Precision
{
    /// <summary>MLA projections (q_a, q_b or q, kv_a, kv_b, o).</summary>
    public WeightFormat Attention { get; init; }
    /// <summary>The dense MLP of the first layers.</summary>
    public WeightFormat DenseMlp { get; init; }
    /// <summary>The shared experts of MoE layers.</summary>
    public WeightFormat SharedExperts { get; init; }
    /// <summary>The routed experts.</summary>
    public WeightFormat RoutedExperts { get; init; }
    /// <summary>The output projection to the vocabulary.</summary>
    public WeightFormat LmHead { get; init; }
    /// <summary>Grouping of <see cref="WeightFormat.Int4"/> tensors.</summary>
    public Int4Format Int4 { get; init; } = Int4Format.Default;
    /// <summary>
    /// Values per scale of <see cref="WeightFormat.W8A8"/> tensors: 0, one scale per row (our quantizer), or 32, one per
    /// block of 32 with activations quantized per block too (a GGUF's Q8_0 kept as stored).
    /// </summary>
    public int Int8BlockSize { get; init; }
    /// <summary>Search each INT4 group's scale and min for the least squared error (else plain round-to-nearest).</summary>
    public bool SearchInt4Scales { get; init; } = true;

    /// <summary>Exact F32 compute over the stored weights.</summary>
    public static Precision F32 { get; } = new();

    /// <summary>Every matrix in BF16.</summary>
    public static Precision Bf16 { get; } = new() { Attention = WeightFormat.Bf16, DenseMlp = WeightFormat.Bf16, SharedExperts = WeightFormat.Bf16, RoutedExperts = WeightFormat.Bf16, LmHead = WeightFormat.Bf16 };

    /// <summary>The production mix: W8A8 outside the routed experts, INT4 (group 32, scale and min) for them.</summary>
    public static Precision W8A8Int4 { get; } = new() { Attention = WeightFormat.W8A8, DenseMlp = WeightFormat.W8A8, SharedExperts = WeightFormat.W8A8, RoutedExperts = WeightFormat.Int4, LmHead = WeightFormat.W8A8 };

    /// <summary>W8A8 outside the routed experts, Q4_K for them: 4.5 bits per expert weight (INT4 g32 takes 5).</summary>
    public static Precision W8A8Q4K { get; } = W8A8Int4 with { RoutedExperts = WeightFormat.Q4K };

    /// <summary>Preset names accepted by <see cref="Parse"/>.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["f32", "bf16", "w8a8-int4", "w8a8-q4_k"];

    /// <summary>A named preset.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static Precision Parse(string preset) => preset switch
    {
        "f32" => F32,
        "bf16" => Bf16,
        "w8a8-int4" => W8A8Int4,
        "w8a8-q4_k" => W8A8Q4K,
        _ => throw new ArgumentException($"Unknown precision preset '{preset}'; known: {string.Join(", ", PresetNames)}.", nameof(preset)),
    };

    /// <summary>Whether any class is quantized to integers.</summary>
    public bool IsQuantized => new[] { Attention, DenseMlp, SharedExperts, RoutedExperts, LmHead }.Any(f => f is WeightFormat.W8A8 or WeightFormat.Int4 or WeightFormat.Q4K or WeightFormat.Gguf);

    /// <summary>A compact description, e.g. attention=w8a8 ... routed_experts=int4-g32-asym.</summary>
    public string Describe() =>
        $"attention={Name(Attention)} dense_mlp={Name(DenseMlp)} shared_experts={Name(SharedExperts)} routed_experts={Name(RoutedExperts)} lm_head={Name(LmHead)}";

    /// <summary>
    /// The format of a tensor by its name in the Hugging Face layout: the class of a projection matrix, Native for
    /// everything else (embeddings, norms, the router). The loader asks per class; this serves whole-checkpoint work.
    /// </summary>
    public WeightFormat FormatOf(string tensorName)
    {
        if (tensorName == "lm_head.weight")
            return LmHead;
        if (!tensorName.EndsWith("_proj.weight", StringComparison.Ordinal) && !tensorName.EndsWith("_proj_with_mqa.weight", StringComparison.Ordinal))
            return WeightFormat.Native;
        if (tensorName.Contains(".self_attn.", StringComparison.Ordinal))
            return Attention;
        if (tensorName.Contains(".mlp.shared_experts.", StringComparison.Ordinal))
            return SharedExperts;
        if (tensorName.Contains(".mlp.experts.", StringComparison.Ordinal))
            return RoutedExperts;
        return DenseMlp;
    }

    /// <summary>
    /// Bytes of a [rows, cols] matrix in <paramref name="format"/> as the CPU backends hold it, INT4 and W8A8 grouped and
    /// scaled as this precision says; Native as <paramref name="stored"/> where that is BF16 (read in place), else as F32;
    /// a class of <see cref="WeightFormat.Gguf"/> at Q6_K's size, the widest of its blocks (GGUF files are planned from
    /// their tensors instead).
    /// </summary>
    public long MatrixBytes(long rows, long cols, WeightFormat format, Formats.TensorDType stored) => format switch
    {
        WeightFormat.Int4 => rows * cols / 2 + rows * ((cols + Int4.GroupSize - 1) / Int4.GroupSize) * (Int4.Symmetric ? 2 : 4),
        WeightFormat.Q4K => Kernels.KBlockLayout.BytesOf(Kernels.KBlockFormat.Q4K, rows, cols),
        WeightFormat.Gguf => Kernels.KBlockLayout.BytesOf(Kernels.KBlockFormat.Q6K, rows, cols),
        WeightFormat.W8A8 => rows * cols + rows * (Int8BlockSize == 0 ? 1 : cols / Int8BlockSize) * sizeof(float),
        WeightFormat.Bf16 => rows * cols * 2,
        _ => rows * cols * (stored == Formats.TensorDType.BF16 ? 2 : 4),
    };

    /// <summary>The per-class formats as the <c>quantization_config</c> of a converted checkpoint records them.</summary>
    public JsonObject ToJson() => new()
    {
        ["attention"] = Name(Attention),
        ["dense_mlp"] = Name(DenseMlp),
        ["shared_experts"] = Name(SharedExperts),
        ["routed_experts"] = Name(RoutedExperts),
        ["lm_head"] = Name(LmHead),
    };

    /// <summary>Reads what <see cref="ToJson"/> wrote; <paramref name="source"/> names the file in errors.</summary>
    /// <exception cref="InvalidDataException">A class is missing or names an unknown format.</exception>
    public static Precision FromJson(JsonObject json, string source)
    {
        Int4Format int4 = Int4Format.Default;
        int int8Block = 0;
        bool perRow = false;
        WeightFormat Read(string field)
        {
            string? text = json[field]?.GetValue<string>();
            switch (text)
            {
                case "native": return WeightFormat.Native;
                case "bf16": return WeightFormat.Bf16;
                case "w8a8":
                    perRow = true;
                    return WeightFormat.W8A8;
                case "q8_0":
                    int8Block = Kernels.Int8Layout.Q8BlockSize;
                    return WeightFormat.W8A8;
                case "q4_k": return WeightFormat.Q4K;
                case "gguf": return WeightFormat.Gguf;
                case { } t when Int4Format.TryParse(t, out Int4Format? f):
                    int4 = f;
                    return WeightFormat.Int4;
                default: throw new InvalidDataException($"{source}: quantization_config.{field} '{text}' is not a known weight format.");
            }
        }
        var precision = new Precision
        {
            Attention = Read("attention"), DenseMlp = Read("dense_mlp"), SharedExperts = Read("shared_experts"),
            RoutedExperts = Read("routed_experts"), LmHead = Read("lm_head"), Int4 = int4, Int8BlockSize = int8Block,
        };
        // One INT8 scaling serves every W8A8 class of a precision.
        if (perRow && int8Block != 0)
            throw new InvalidDataException($"{source}: quantization_config mixes w8a8 (a scale per row) and q8_0 (a scale per block of 32); a checkpoint holds one of them.");
        return precision;
    }

    /// <summary>The name of a format as configs and reports write it.</summary>
    public string Name(WeightFormat format) => format switch
    {
        WeightFormat.Native => "native",
        WeightFormat.Bf16 => "bf16",
        WeightFormat.W8A8 => Int8BlockSize == 0 ? "w8a8" : "q8_0",
        WeightFormat.Q4K => "q4_k",
        WeightFormat.Gguf => "gguf",
        _ => Int4.ToString(),
    };
}
