using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ftransformers.Tokenization;

/// <summary>An added token of <c>tokenizer.json</c>: matched whole in text, never split by BPE.</summary>
internal readonly record struct AddedTokenEntry(int Id, string Content, bool Special);

/// <summary>What <see cref="DeepSeekTokenizer"/> needs from a Hugging Face tokenizer folder.</summary>
internal sealed record TokenizerDefinition(
    IReadOnlyDictionary<string, int> Vocabulary,
    IReadOnlyList<string> Merges,
    IReadOnlyList<AddedTokenEntry> AddedTokens,
    string BosToken,
    string EosToken,
    string? ChatTemplate)
{
    /// <summary>Which DeepSeek template <see cref="ChatTemplate"/> is.</summary>
    public ChatFormat ChatFormat => TokenizerFiles.FormatOf(ChatTemplate);
}

/// <summary>
/// Reads <c>tokenizer.json</c> and <c>tokenizer_config.json</c>, and writes them (from a GGUF's tokenizer). Every error
/// names the file and the field at fault, since a half-read tokenizer would silently produce wrong ids.
/// </summary>
internal static class TokenizerFiles
{
    public const string TokenizerFileName = "tokenizer.json";
    public const string ConfigFileName = "tokenizer_config.json";

    // The split patterns of DeepSeek-V3's pre_tokenizer, which DeepSeekPreTokenizer implements.
    private static readonly string[] ExpectedSplitPatterns =
        [DeepSeekPreTokenizer.DigitsPattern, DeepSeekPreTokenizer.CjkAndKanaPattern, DeepSeekPreTokenizer.WordsPattern];

    public static TokenizerDefinition Read(string directory)
    {
        string tokenizerPath = Path.Combine(directory, TokenizerFileName);
        string configPath = Path.Combine(directory, ConfigFileName);

        using JsonDocument tokenizer = JsonFields.Parse(tokenizerPath, "Tokenizer file");
        JsonElement root = tokenizer.RootElement;
        JsonElement model = JsonFields.Required(root, "model", tokenizerPath, "model", JsonValueKind.Object);
        string modelType = JsonFields.Required(model, "type", tokenizerPath, "model.type", JsonValueKind.String).GetString()!;
        if (modelType != "BPE")
            throw new InvalidDataException($"'{tokenizerPath}': field 'model.type' is '{modelType}', expected 'BPE'.");
        CheckPreTokenizer(root, tokenizerPath);

        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in JsonFields.Required(model, "vocab", tokenizerPath, "model.vocab", JsonValueKind.Object).EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                throw new InvalidDataException($"'{tokenizerPath}': field 'model.vocab' maps '{entry.Name}' to {entry.Value.GetRawText()}, expected a non-negative integer id.");
            vocabulary[entry.Name] = id;
        }

        var merges = new List<string>();
        foreach (JsonElement merge in JsonFields.Required(model, "merges", tokenizerPath, "model.merges", JsonValueKind.Array).EnumerateArray())
        {
            // Older files store "a b", newer ones ["a", "b"].
            string? pair = merge.ValueKind switch
            {
                JsonValueKind.String => merge.GetString(),
                JsonValueKind.Array when merge.GetArrayLength() == 2 && merge.EnumerateArray().All(p => p.ValueKind == JsonValueKind.String)
                    => $"{merge[0].GetString()} {merge[1].GetString()}",
                _ => null,
            };
            if (pair is null)
                throw new InvalidDataException($"'{tokenizerPath}': field 'model.merges' holds {merge.GetRawText()}, expected \"a b\" or [\"a\", \"b\"].");
            merges.Add(pair);
        }

        var addedTokens = new List<AddedTokenEntry>();
        foreach (JsonElement token in JsonFields.Required(root, "added_tokens", tokenizerPath, "added_tokens", JsonValueKind.Array).EnumerateArray())
        {
            if (!JsonFields.Required(token, "id", tokenizerPath, "added_tokens[].id", JsonValueKind.Number).TryGetInt32(out int id) || id < 0)
                throw new InvalidDataException($"'{tokenizerPath}': field 'added_tokens[].id' of {token.GetRawText()} is not a non-negative integer.");
            string content = JsonFields.Required(token, "content", tokenizerPath, "added_tokens[].content", JsonValueKind.String).GetString()!;
            bool special = token.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
            addedTokens.Add(new AddedTokenEntry(id, content, special));
        }

        using JsonDocument config = JsonFields.Parse(configPath, "Tokenizer config");
        string bos = TokenText(config.RootElement, "bos_token", configPath);
        string eos = TokenText(config.RootElement, "eos_token", configPath);
        return new TokenizerDefinition(vocabulary, merges, addedTokens, bos, eos, ChatTemplate(config.RootElement));
    }

    /// <summary>
    /// Writes <paramref name="definition"/> as DeepSeek-V3's <c>tokenizer.json</c> (byte-level BPE under its split
    /// pre-tokenizer) and <c>tokenizer_config.json</c> (BOS, EOS, chat template) into <paramref name="directory"/>, which
    /// <see cref="Read"/> and Hugging Face's tokenizers read back.
    /// </summary>
    public static void Write(TokenizerDefinition definition, string directory)
    {
        static JsonObject Split(string pattern) => new()
        {
            ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated", ["invert"] = false,
        };
        static JsonObject ByteLevel(bool prefix, bool trim, bool regex) => new()
        {
            ["type"] = "ByteLevel", ["add_prefix_space"] = prefix, ["trim_offsets"] = trim, ["use_regex"] = regex,
        };
        var vocabulary = new JsonObject();
        foreach ((string token, int id) in definition.Vocabulary.OrderBy(v => v.Value))
            vocabulary[token] = id;
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray([.. definition.AddedTokens.OrderBy(a => a.Id).Select(a => (JsonNode)new JsonObject
            {
                ["id"] = a.Id, ["content"] = a.Content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = !a.Special, ["special"] = a.Special,
            })]),
            ["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray() },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray([.. ExpectedSplitPatterns.Select(p => (JsonNode)Split(p)), ByteLevel(false, true, false)]),
            },
            ["post_processor"] = ByteLevel(true, false, true),
            ["decoder"] = ByteLevel(true, true, true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocabulary,
                ["merges"] = new JsonArray([.. definition.Merges.Select(m => (JsonNode)m)]),
            },
        };
        var config = new JsonObject
        {
            ["add_bos_token"] = true, ["add_eos_token"] = false, ["bos_token"] = definition.BosToken, ["eos_token"] = definition.EosToken,
            ["pad_token"] = definition.EosToken, ["tokenizer_class"] = "LlamaTokenizerFast",
        };
        if (definition.ChatTemplate is { } template)
            config["chat_template"] = template;
        Directory.CreateDirectory(directory);
        var options = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(Path.Combine(directory, TokenizerFileName), tokenizer.ToJsonString(options));
        File.WriteAllText(Path.Combine(directory, ConfigFileName), config.ToJsonString(new JsonSerializerOptions(options) { WriteIndented = true }));
    }

    private static string? ChatTemplate(JsonElement config) =>
        config.TryGetProperty("chat_template", out JsonElement template) && template.ValueKind == JsonValueKind.String ? template.GetString() : null;

    /// <summary>V3.1's template is the one with a thinking switch (and its is_last_user bookkeeping); V3's and R1's have neither.</summary>
    public static ChatFormat FormatOf(string? template) =>
        template != null && template.Contains("thinking", StringComparison.Ordinal) && template.Contains("is_last_user", StringComparison.Ordinal)
            ? ChatFormat.DeepSeekV31
            : ChatFormat.DeepSeekV3;

    // bos_token/eos_token is either the token text or an AddedToken object with "content".
    private static string TokenText(JsonElement config, string name, string path)
    {
        if (!config.TryGetProperty(name, out JsonElement value))
            throw new InvalidDataException($"'{path}': missing field '{name}'.");
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.Object => JsonFields.Required(value, "content", path, name + ".content", JsonValueKind.String).GetString()!,
            _ => throw new InvalidDataException($"'{path}': field '{name}' is {value.ValueKind}, expected a string or an object with 'content'."),
        };
    }

    // The pre-tokenizer is code, not data: refuse a tokenizer.json whose splits differ from it.
    private static void CheckPreTokenizer(JsonElement root, string path)
    {
        JsonElement preTokenizer = JsonFields.Required(root, "pre_tokenizer", path, "pre_tokenizer", JsonValueKind.Object);
        var patterns = new List<string>();
        if (preTokenizer.TryGetProperty("pretokenizers", out JsonElement steps) && steps.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement step in steps.EnumerateArray())
            {
                if (step.ValueKind == JsonValueKind.Object && step.TryGetProperty("pattern", out JsonElement pattern)
                    && pattern.ValueKind == JsonValueKind.Object && pattern.TryGetProperty("Regex", out JsonElement regex))
                    patterns.Add(regex.GetString() ?? "");
            }
        }
        if (!patterns.SequenceEqual(ExpectedSplitPatterns))
            throw new InvalidDataException($"'{path}': field 'pre_tokenizer' is not DeepSeek-V3's split sequence (digits, CJK, words); this tokenizer cannot reproduce it.");
    }
}
