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

    /// <summary>The names <see cref="Get"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tiny"];

    /// <summary>The architecture of a named synthetic model.</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static DeepSeekV3Config Get(string name) => name switch
    {
        "tiny" => Tiny,
        _ => throw new ArgumentException($"Unknown synthetic model '{name}'; known: {string.Join(", ", Names)}.", nameof(name)),
    };
}
