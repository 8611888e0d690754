namespace Ftransformers.Model;

/// <summary>Named architectures for synthetic models (<c>--model synthetic:NAME</c>).</summary>
public static class SyntheticModels
{
    /// <summary>The prefix that selects a synthetic model instead of a folder.</summary>
    public const string Prefix = "synthetic:";

    /// <summary>
    /// A small model with every DeepSeek-V3 feature (q/kv LoRA, YaRN, a dense first layer, grouped sigmoid routing
    /// with correction bias, a shared expert), the shape of the tiny reference fixture.
    /// </summary>
    public static DeepSeekV3Config Tiny { get; } = new()
    {
        VocabSize = 1024, HiddenSize = 128, IntermediateSize = 256, MoeIntermediateSize = 64,
        NumHiddenLayers = 3, FirstKDenseReplace = 1, NumAttentionHeads = 4,
        NRoutedExperts = 16, NSharedExperts = 1, NumExpertsPerTok = 4, NGroup = 4, TopkGroup = 2,
        RoutedScalingFactor = 2.5, QLoraRank = 64, KvLoraRank = 32, QkNopeHeadDim = 32, QkRopeHeadDim = 16, VHeadDim = 32,
        MaxPositionEmbeddings = 4096, RopeScaling = new RopeScaling(4, 1024, Mscale: 1, MscaleAllDim: 1),
        BosTokenId = 0, EosTokenIds = [1],
    };

    /// <summary>
    /// DeepSeek-V3's expert layout (256 routed experts, 8 per token, 8 groups of which 4 compete, one shared expert,
    /// a dense first layer) at a width that runs on a laptop: for serving benchmarks, where how tokens of different
    /// requests share (or do not share) experts decides what batching gains. Attention, the shared expert and the
    /// router keep about V3's share of the weights read per token.
    /// </summary>
    public static DeepSeekV3Config V3Layout { get; } = Tiny with
    {
        HiddenSize = 256, IntermediateSize = 512, NumHiddenLayers = 4, NumAttentionHeads = 8,
        NRoutedExperts = 256, NumExpertsPerTok = 8, NGroup = 8, TopkGroup = 4, QLoraRank = 96, KvLoraRank = 64,
    };

    /// <summary>
    /// DeepSeek-V3's real widths (hidden 7168, 128 heads, q/kv LoRA 1536/512, 256 routed experts of width 2048, dense
    /// width 18432, vocabulary 129280, YaRN factor 40) with only the layers that fit in about 16 GiB: one dense layer,
    /// then one MoE layer. Made already converted to <see cref="Precision.W8A8Int4"/> in this CPU's INT4 layout (about
    /// 10.7 GB, computed from in place), for measuring per-layer times at real shapes; a bench projects the 61 layers of
    /// the full model from them.
    /// </summary>
    public static DeepSeekV3Config V3Real { get; } = new()
    {
        VocabSize = 129280, HiddenSize = 7168, IntermediateSize = 18432, MoeIntermediateSize = 2048,
        NumHiddenLayers = 2, FirstKDenseReplace = 1, NumAttentionHeads = 128,
        NRoutedExperts = 256, NSharedExperts = 1, NumExpertsPerTok = 8, NGroup = 8, TopkGroup = 4,
        ScoringFunc = "sigmoid", NormTopkProb = true, RoutedScalingFactor = 2.5,
        QLoraRank = 1536, KvLoraRank = 512, QkNopeHeadDim = 128, QkRopeHeadDim = 64, VHeadDim = 128,
        MaxPositionEmbeddings = 163840, RopeTheta = 10000,
        RopeScaling = new RopeScaling(40, 4096, BetaFast: 32, BetaSlow: 1, Mscale: 1, MscaleAllDim: 1),
        BosTokenId = 0, EosTokenIds = [1],
        ConvertedPrecision = Precision.W8A8Int4,
    };

    /// <summary><see cref="V3Real"/> with its routed experts in Q4_K (<see cref="Precision.W8A8Q4K"/>).</summary>
    public static DeepSeekV3Config V3RealQ4K { get; } = V3Real with { ConvertedPrecision = Precision.W8A8Q4K };

    /// <summary>The names <see cref="Get"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tiny", "v3-layout", "v3-real", "v3-real-q4_k"];

    /// <summary>The architecture of a named synthetic model.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static DeepSeekV3Config Get(string name) => name switch
    {
        "tiny" => Tiny,
        "v3-layout" => V3Layout,
        "v3-real" => V3Real,
        "v3-real-q4_k" => V3RealQ4K,
        _ => throw new ArgumentException($"Unknown synthetic model '{name}'; known: {string.Join(", ", Names)}.", nameof(name)),
    };
}
