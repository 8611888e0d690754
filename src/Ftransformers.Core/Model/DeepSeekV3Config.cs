using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ftransformers.Model;

/// <summary>
/// Architecture of a DeepSeek-V3-class model, read from a Hugging Face <c>config.json</c>
/// (<c>model_type</c> <c>deepseek_v3</c>, or <c>kimi_k2</c> which shares the architecture).
/// </summary>
public sealed record DeepSeekV3Config
{
    /// <summary>Vocabulary size (rows of the embedding and of lm_head).</summary>
    public required int VocabSize { get; init; }
    /// <summary>Model width.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>Width of the dense MLP of the first layers.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Width of one routed or shared expert.</summary>
    public required int MoeIntermediateSize { get; init; }
    /// <summary>Number of transformer layers.</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary>Layers before this index use the dense MLP.</summary>
    public required int FirstKDenseReplace { get; init; }
    /// <summary>Every this-many layers (after the dense ones) is a MoE layer.</summary>
    public int MoeLayerFreq { get; init; } = 1;
    /// <summary>Attention heads.</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary>Routed experts per MoE layer.</summary>
    public required int NRoutedExperts { get; init; }
    /// <summary>Shared experts per MoE layer (fused into one MLP of this many times the expert width).</summary>
    public required int NSharedExperts { get; init; }
    /// <summary>Experts each token is routed to.</summary>
    public required int NumExpertsPerTok { get; init; }
    /// <summary>Expert groups for group-limited routing.</summary>
    public int NGroup { get; init; } = 1;
    /// <summary>Groups kept per token.</summary>
    public int TopkGroup { get; init; } = 1;
    /// <summary>Router scoring function: <c>sigmoid</c> or <c>softmax</c>.</summary>
    public string ScoringFunc { get; init; } = "sigmoid";
    /// <summary>Whether the selected experts' weights are normalized to sum to one.</summary>
    public bool NormTopkProb { get; init; } = true;
    /// <summary>Multiplier of the routed experts' weights.</summary>
    public double RoutedScalingFactor { get; init; } = 1.0;
    /// <summary>Rank of the query compression; null for a direct query projection.</summary>
    public int? QLoraRank { get; init; }
    /// <summary>Rank of the key/value latent.</summary>
    public required int KvLoraRank { get; init; }
    /// <summary>Per-head query/key width without position encoding.</summary>
    public required int QkNopeHeadDim { get; init; }
    /// <summary>Per-head query/key width carrying rotary position encoding (shared key across heads).</summary>
    public required int QkRopeHeadDim { get; init; }
    /// <summary>Per-head value width.</summary>
    public required int VHeadDim { get; init; }
    /// <summary>Longest supported context.</summary>
    public required int MaxPositionEmbeddings { get; init; }
    /// <summary>Rotary base.</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>YaRN parameters, or null for plain rotary embeddings.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>Epsilon of every RMSNorm.</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>Whether lm_head shares the embedding matrix.</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Beginning-of-sequence token id.</summary>
    public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence token ids (generation stops on any).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary>Block size of FP8 weight scales, when the checkpoint is FP8 (<c>quantization_config.weight_block_size</c>).</summary>
    public int Fp8BlockSize { get; init; } = 128;

    /// <summary>The formats of a checkpoint written by <c>ftransformers convert</c>; null for an original checkpoint.</summary>
    public Precision? ConvertedPrecision { get; init; }

    /// <summary>The <c>quant_method</c> that marks a converted checkpoint.</summary>
    public const string ConvertedQuantMethod = "ftransformers";

    /// <summary>Query/key width per head.</summary>
    public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;

    /// <summary>Whether layer <paramref name="layer"/> uses routed experts.</summary>
    public bool IsMoeLayer(int layer) => NRoutedExperts > 0 && layer >= FirstKDenseReplace && layer % MoeLayerFreq == 0;

    /// <summary>Every tensor of the Hugging Face layout of this architecture, with its shape.</summary>
    public IEnumerable<(string Name, long[] Shape)> TensorShapes()
    {
        long h = HiddenSize, heads = NumAttentionHeads;
        yield return ("model.embed_tokens.weight", [VocabSize, h]);
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}";
            yield return (p + ".input_layernorm.weight", [h]);
            yield return (p + ".post_attention_layernorm.weight", [h]);
            if (QLoraRank is int q)
            {
                yield return (p + ".self_attn.q_a_proj.weight", [q, h]);
                yield return (p + ".self_attn.q_a_layernorm.weight", [q]);
                yield return (p + ".self_attn.q_b_proj.weight", [heads * QkHeadDim, q]);
            }
            else
            {
                yield return (p + ".self_attn.q_proj.weight", [heads * QkHeadDim, h]);
            }
            yield return (p + ".self_attn.kv_a_proj_with_mqa.weight", [KvLoraRank + QkRopeHeadDim, h]);
            yield return (p + ".self_attn.kv_a_layernorm.weight", [KvLoraRank]);
            yield return (p + ".self_attn.kv_b_proj.weight", [heads * (QkNopeHeadDim + VHeadDim), KvLoraRank]);
            yield return (p + ".self_attn.o_proj.weight", [h, heads * VHeadDim]);
            if (!IsMoeLayer(i))
            {
                foreach (var t in MlpShapes(p + ".mlp", h, IntermediateSize))
                    yield return t;
                continue;
            }
            yield return (p + ".mlp.gate.weight", [NRoutedExperts, h]);
            yield return (p + ".mlp.gate.e_score_correction_bias", [NRoutedExperts]);
            for (int e = 0; e < NRoutedExperts; e++)
                foreach (var t in MlpShapes($"{p}.mlp.experts.{e}", h, MoeIntermediateSize))
                    yield return t;
            if (NSharedExperts > 0)
                foreach (var t in MlpShapes(p + ".mlp.shared_experts", h, MoeIntermediateSize * NSharedExperts))
                    yield return t;
        }
        yield return ("model.norm.weight", [h]);
        if (!TieWordEmbeddings)
            yield return ("lm_head.weight", [VocabSize, h]);
    }

    private static IEnumerable<(string, long[])> MlpShapes(string prefix, long hidden, long width)
    {
        yield return (prefix + ".gate_proj.weight", [width, hidden]);
        yield return (prefix + ".up_proj.weight", [width, hidden]);
        yield return (prefix + ".down_proj.weight", [hidden, width]);
    }

    /// <summary>
    /// Scale of attention scores: 1/sqrt(qk_head_dim), times YaRN's mscale(factor, mscale_all_dim) squared.
    /// </summary>
    public double SoftmaxScale
    {
        get
        {
            double scale = 1.0 / Math.Sqrt(QkHeadDim);
            if (RopeScaling is { } y)
            {
                double m = RopeScaling.GetMscale(y.Factor, y.MscaleAllDim);
                scale *= m * m;
            }
            return scale;
        }
    }

    /// <summary>Reads and validates <c>config.json</c> in a checkpoint folder.</summary>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="InvalidDataException">A field is missing, malformed or unsupported; the message names it.</exception>
    public static DeepSeekV3Config Load(string directory)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException($"Model folder '{directory}' has no config.json.", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in errors.</summary>
    public static DeepSeekV3Config Parse(string json, string source = "config.json")
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{source}: expected a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON: {e.Message}", e);
        }
        var reader = new ConfigReader(root, source);
        string modelType = reader.String("model_type");
        if (modelType is not ("deepseek_v3" or "kimi_k2"))
            throw new InvalidDataException($"{source}: model_type '{modelType}' is not supported (expected 'deepseek_v3').");
        string act = reader.String("hidden_act", "silu");
        if (act != "silu")
            throw new InvalidDataException($"{source}: hidden_act '{act}' is not supported (expected 'silu').");
        string topkMethod = reader.String("topk_method", "noaux_tc");
        if (topkMethod is not ("noaux_tc" or "greedy" or "group_limited_greedy"))
            throw new InvalidDataException($"{source}: topk_method '{topkMethod}' is not supported.");

        var config = new DeepSeekV3Config
        {
            VocabSize = reader.Int("vocab_size"),
            HiddenSize = reader.Int("hidden_size"),
            IntermediateSize = reader.Int("intermediate_size"),
            MoeIntermediateSize = reader.Int("moe_intermediate_size"),
            NumHiddenLayers = reader.Int("num_hidden_layers"),
            FirstKDenseReplace = reader.Int("first_k_dense_replace", 0, min: 0),
            MoeLayerFreq = reader.Int("moe_layer_freq", 1),
            NumAttentionHeads = reader.Int("num_attention_heads"),
            NRoutedExperts = reader.Int("n_routed_experts", 0, min: 0),
            NSharedExperts = reader.Int("n_shared_experts", 0, min: 0),
            NumExpertsPerTok = reader.Int("num_experts_per_tok", 0, min: 0),
            NGroup = reader.Int("n_group", 1),
            TopkGroup = reader.Int("topk_group", 1),
            ScoringFunc = reader.String("scoring_func", "sigmoid"),
            NormTopkProb = reader.Bool("norm_topk_prob", true),
            RoutedScalingFactor = reader.Double("routed_scaling_factor", 1.0),
            QLoraRank = reader.NullableInt("q_lora_rank"),
            KvLoraRank = reader.Int("kv_lora_rank"),
            QkNopeHeadDim = reader.Int("qk_nope_head_dim", min: 0),
            QkRopeHeadDim = reader.Int("qk_rope_head_dim"),
            VHeadDim = reader.Int("v_head_dim"),
            MaxPositionEmbeddings = reader.Int("max_position_embeddings"),
            RopeTheta = reader.Double("rope_theta", 10000),
            RopeScaling = ReadRopeScaling(root, source),
            RmsNormEps = reader.Double("rms_norm_eps", 1e-6),
            TieWordEmbeddings = reader.Bool("tie_word_embeddings", false),
            BosTokenId = reader.NullableInt("bos_token_id", min: 0),
            EosTokenIds = reader.IntList("eos_token_id"),
            Fp8BlockSize = ReadFp8BlockSize(root, source),
            ConvertedPrecision = root["quantization_config"] is JsonObject q && q["quant_method"]?.GetValue<string>() == ConvertedQuantMethod
                ? Precision.FromJson(q, source) : null,
        };
        config.Validate(source);
        return config;
    }

    /// <summary>Checks the relations between fields that the model relies on.</summary>
    /// <exception cref="InvalidDataException">A relation does not hold; the message names the fields.</exception>
    public void Validate(string source = "config")
    {
        void Require(bool ok, string message)
        {
            if (!ok)
                throw new InvalidDataException($"{source}: {message}");
        }
        Require(QkRopeHeadDim % 2 == 0, $"qk_rope_head_dim ({QkRopeHeadDim}) must be even.");
        Require(ScoringFunc is "sigmoid" or "softmax", $"scoring_func '{ScoringFunc}' is not supported (expected 'sigmoid' or 'softmax').");
        Require(MoeLayerFreq >= 1, "moe_layer_freq must be at least 1.");
        if (NRoutedExperts > 0)
        {
            Require(NumExpertsPerTok is >= 1 && NumExpertsPerTok <= NRoutedExperts, $"num_experts_per_tok ({NumExpertsPerTok}) must be between 1 and n_routed_experts ({NRoutedExperts}).");
            Require(NGroup >= 1 && NRoutedExperts % NGroup == 0, $"n_routed_experts ({NRoutedExperts}) must be divisible by n_group ({NGroup}).");
            Require(TopkGroup >= 1 && TopkGroup <= NGroup, $"topk_group ({TopkGroup}) must be between 1 and n_group ({NGroup}).");
            Require(NumExpertsPerTok <= TopkGroup * (NRoutedExperts / NGroup), $"num_experts_per_tok ({NumExpertsPerTok}) exceeds the experts in topk_group ({TopkGroup}) groups.");
            Require(NGroup == 1 || NRoutedExperts / NGroup >= 2, "group-limited routing needs at least 2 experts per group (group score = sum of the top 2).");
        }
        Require(FirstKDenseReplace <= NumHiddenLayers, $"first_k_dense_replace ({FirstKDenseReplace}) exceeds num_hidden_layers ({NumHiddenLayers}).");
        if (RopeScaling is { } y)
        {
            Require(y.Factor >= 1, $"rope_scaling.factor ({y.Factor}) must be at least 1.");
            Require(y.OriginalMaxPositionEmbeddings >= 1, "rope_scaling.original_max_position_embeddings must be positive.");
        }
    }

    /// <summary>Writes the config as a Hugging Face <c>config.json</c> that <see cref="Parse"/> reads back.</summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["architectures"] = new JsonArray("DeepseekV3ForCausalLM"),
            ["model_type"] = "deepseek_v3",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["moe_intermediate_size"] = MoeIntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["first_k_dense_replace"] = FirstKDenseReplace,
            ["moe_layer_freq"] = MoeLayerFreq,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumAttentionHeads,
            ["n_routed_experts"] = NRoutedExperts,
            ["n_shared_experts"] = NSharedExperts,
            ["num_experts_per_tok"] = NumExpertsPerTok,
            ["n_group"] = NGroup,
            ["topk_group"] = TopkGroup,
            ["topk_method"] = "noaux_tc",
            ["scoring_func"] = ScoringFunc,
            ["norm_topk_prob"] = NormTopkProb,
            ["routed_scaling_factor"] = RoutedScalingFactor,
            ["q_lora_rank"] = QLoraRank,
            ["kv_lora_rank"] = KvLoraRank,
            ["qk_nope_head_dim"] = QkNopeHeadDim,
            ["qk_rope_head_dim"] = QkRopeHeadDim,
            ["v_head_dim"] = VHeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = RopeScaling is { } y ? new JsonObject
            {
                ["type"] = "yarn",
                ["factor"] = y.Factor,
                ["original_max_position_embeddings"] = y.OriginalMaxPositionEmbeddings,
                ["beta_fast"] = y.BetaFast,
                ["beta_slow"] = y.BetaSlow,
                ["mscale"] = y.Mscale,
                ["mscale_all_dim"] = y.MscaleAllDim,
            } : null,
            ["rms_norm_eps"] = RmsNormEps,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? JsonValue.Create(EosTokenIds[0]) : new JsonArray(EosTokenIds.Select(i => (JsonNode?)i).ToArray()),
            ["torch_dtype"] = "bfloat16",
        };
        if (ConvertedPrecision is { } converted)
        {
            JsonObject q = converted.ToJson();
            q["quant_method"] = ConvertedQuantMethod;
            root["quantization_config"] = q;
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static RopeScaling? ReadRopeScaling(JsonObject root, string source)
    {
        if (root["rope_scaling"] is not JsonObject scaling)
            return null;
        var reader = new ConfigReader(scaling, source + ": rope_scaling");
        string type = scaling.ContainsKey("type") ? reader.String("type") : reader.String("rope_type", "default");
        if (type == "default")
            return null;
        if (type != "yarn")
            throw new InvalidDataException($"{source}: rope_scaling type '{type}' is not supported (expected 'yarn').");
        return new RopeScaling(
            reader.Double("factor", 1),
            reader.Int("original_max_position_embeddings"),
            reader.Double("beta_fast", 32),
            reader.Double("beta_slow", 1),
            reader.Double("mscale", 1),
            reader.Double("mscale_all_dim", 0));
    }

    private static int ReadFp8BlockSize(JsonObject root, string source)
    {
        if (root["quantization_config"] is not JsonObject q)
            return 128;
        var reader = new ConfigReader(q, source + ": quantization_config");
        string method = reader.String("quant_method", "fp8");
        if (method == ConvertedQuantMethod)
            return 128;
        if (method != "fp8")
            throw new InvalidDataException($"{source}: quantization_config.quant_method '{method}' is not supported (expected 'fp8').");
        IReadOnlyList<int> block = reader.IntList("weight_block_size");
        if (block.Count == 0)
            return 128;
        if (block.Count != 2 || block[0] != block[1] || block[0] < 1)
            throw new InvalidDataException($"{source}: quantization_config.weight_block_size must be a square [n, n], got [{string.Join(", ", block)}].");
        return block[0];
    }
}
