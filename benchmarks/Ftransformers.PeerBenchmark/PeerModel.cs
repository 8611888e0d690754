using Ftransformers.Formats;
using Ftransformers.Model;

/// <summary>
/// A GGUF format of the peer benchmark (Q8_0 matrices or BF16; the routed experts in <paramref name="Experts"/>: Q4_0,
/// Q4_K, or null for the rest's format; or with <paramref name="KMix"/> Q4_K or Q5_K, the K-quants mixed as a Q4_K_M or
/// Q5_K_M file mixes them), and the ways ours runs it (null: the file's own formats).
/// </summary>
internal sealed record PeerFormat(string Name, bool Q8_0, GgmlType? Experts, string?[] Ours, GgmlType? KMix = null);

/// <summary>
/// The random DeepSeek-V3-shaped model both engines run: 8 layers (one dense), width 1024, 32 experts of width 256 (4 a
/// token, one shared), MLA with q/kv LoRA ranks 256/128, DeepSeek-V3's vocabulary and tokenizer (llama.cpp needs one).
/// </summary>
internal static class PeerModel
{
    private static readonly DeepSeekV3Config Config = SyntheticModels.Tiny with
    {
        VocabSize = 129280, HiddenSize = 1024, IntermediateSize = 2048, MoeIntermediateSize = 256, NumHiddenLayers = 8, FirstKDenseReplace = 1,
        NumAttentionHeads = 8, NRoutedExperts = 32, NumExpertsPerTok = 4, NGroup = 4, TopkGroup = 2, QLoraRank = 256, KvLoraRank = 128,
        QkNopeHeadDim = 64, QkRopeHeadDim = 32, VHeadDim = 64, MaxPositionEmbeddings = 4096, BosTokenId = 0, EosTokenIds = [1],
    };

    /// <summary>
    /// Q8_0 attention and dense layers with Q4_0 or Q4_K experts, and all Q8_0 (ours: the file's formats, and
    /// requantized to w8a8-int4), BF16 (ours: as stored, and w8a8-int4), and Q4_K_M- and Q5_K_M-style mixes (Q4_K or Q5_K,
    /// with Q6_K for the experts' down and lm_head; kv_b's 128 columns stay BF16; ours: the file's formats).
    /// </summary>
    public static IReadOnlyList<PeerFormat> Formats { get; } =
    [
        new("q8_0-q4_0-experts", true, GgmlType.Q4_0, [null, "w8a8-int4"]),
        new("q8_0-q4_k-experts", true, GgmlType.Q4_K, [null, "w8a8-int4"]),
        new("q8_0", true, null, [null, "w8a8-int4"]),
        new("bf16", false, null, ["bf16", "w8a8-int4"]),
        new("q4_k_m", false, null, [null], KMix: GgmlType.Q4_K),
        new("q5_k_m", false, null, [null], KMix: GgmlType.Q5_K),
    ];

    public static string Describe() =>
        $"{Config.NumHiddenLayers} layers ({Config.FirstKDenseReplace} dense), hidden {Config.HiddenSize}, {Config.NRoutedExperts} experts of width {Config.MoeIntermediateSize} " +
        $"({Config.NumExpertsPerTok} a token, {Config.NSharedExperts} shared), vocabulary {Config.VocabSize}, random weights (seed 1)";

    /// <summary>
    /// Decode steps of the unmeasured warm-up each engine gets before its measurement, after a prefill of the measured
    /// prompt's length on another sequence: ours then runs its kernels compiled, as a serving process does after its
    /// first requests, and llama.cpp has its buffers sized and its pages touched.
    /// </summary>
    public const int WarmupDecode = 8;

    /// <summary>Vocabulary size: logits per position.</summary>
    public static int Vocab => Config.VocabSize;

    /// <summary>
    /// The logits of every position of <paramref name="tokens"/> from the model's own BF16 weights computed in F32 (ours,
    /// which reproduces DeepSeek's reference): what each engine's run of a quantized file is judged against.
    /// </summary>
    public static float[] ReferenceLogits(int[] tokens)
    {
        using var model = Ftransformers.Inference.DeepSeekV3Model.FromCheckpoint(Config, SyntheticCheckpoint.CreateInMemory(Config, seed: 1));
        return model.Forward(tokens, new Ftransformers.Inference.SequenceKvCache(Config), allPositions: true);
    }

    /// <summary>The token fed at position <paramref name="position"/>: ordinary vocabulary ids, the same for both engines.</summary>
    public static int Token(int position) => 1000 + position * 37 % 100_000;

    public static void Write(string path, PeerFormat format)
    {
        using Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(Config, seed: 1);
        GgufCheckpoint.Write(Config, checkpoint, path, q8_0: format.Q8_0, tokenizerDirectory: RepositoryTokenizer(), q4_0Experts: format.Experts == GgmlType.Q4_0, q4_kExperts: format.Experts == GgmlType.Q4_K, kQuantMix: format.KMix);
    }

    // The DeepSeek-V3 tokenizer fixture of this repository.
    private static string RepositoryTokenizer()
    {
        for (string? dir = AppContext.BaseDirectory; dir != null; dir = Path.GetDirectoryName(dir))
            if (Directory.Exists(Path.Combine(dir, "tests", "fixtures", "deepseek-v3-tokenizer")))
                return Path.Combine(dir, "tests", "fixtures", "deepseek-v3-tokenizer");
        throw new DirectoryNotFoundException("tests/fixtures/deepseek-v3-tokenizer was not found above the benchmark's folder: run it from the repository.");
    }
}
