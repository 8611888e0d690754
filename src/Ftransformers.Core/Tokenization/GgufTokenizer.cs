using Ftransformers.Formats;

namespace Ftransformers.Tokenization;

/// <summary>
/// The DeepSeek-V3 tokenizer as a GGUF file carries it (<c>tokenizer.ggml.*</c>, llama.cpp's <c>gpt2</c> BPE model with
/// the <c>deepseek-v3</c> pre-tokenizer): tokens by id with their types, merges, BOS and EOS, the chat template. Read
/// into the same definition <c>tokenizer.json</c> gives, and written from one.
/// </summary>
internal static class GgufTokenizer
{
    private const int Normal = 1, Control = 3, UserDefined = 4, Unused = 5;

    /// <summary>Whether <paramref name="file"/> carries a tokenizer.</summary>
    public static bool Has(GgufFile file) => file.Metadata.ContainsKey("tokenizer.ggml.tokens");

    /// <summary>The tokenizer in <paramref name="file"/>.</summary>
    /// <exception cref="InvalidDataException">It is missing, not DeepSeek-V3's kind, or inconsistent.</exception>
    public static TokenizerDefinition Read(GgufFile file)
    {
        try
        {
            return ReadDefinition(file);
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
        {
            throw new InvalidDataException($"{file.Path}: the tokenizer metadata holds a value of the wrong kind: {e.Message}", e);
        }
    }

    private static TokenizerDefinition ReadDefinition(GgufFile file)
    {
        GgufValue Required(string key) => file.Metadata.TryGetValue(key, out GgufValue? v) ? v : throw new InvalidDataException($"{file.Path}: metadata '{key}' is missing, so the file carries no tokenizer.");
        string model = Required("tokenizer.ggml.model").AsString(), pre = file.Metadata.TryGetValue("tokenizer.ggml.pre", out GgufValue? p) ? p.AsString() : "(none)";
        if (model != "gpt2" || pre != "deepseek-v3")
            throw new InvalidDataException($"{file.Path}: the tokenizer is '{model}' with pre-tokenizer '{pre}'; DeepSeek-V3's is 'gpt2' with 'deepseek-v3'.");
        IReadOnlyList<object> tokens = Required("tokenizer.ggml.tokens").AsArray();
        IReadOnlyList<object> types = file.Metadata.TryGetValue("tokenizer.ggml.token_type", out GgufValue? t) ? t.AsArray() : [];
        if (types.Count != 0 && types.Count != tokens.Count)
            throw new InvalidDataException($"{file.Path}: {tokens.Count} tokens but {types.Count} token types.");

        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        var added = new List<AddedTokenEntry>();
        for (int id = 0; id < tokens.Count; id++)
        {
            string text = tokens[id] as string ?? throw new InvalidDataException($"{file.Path}: token {id} is not a string.");
            long type = types.Count > 0 ? Convert.ToInt64(types[id]) : Normal;
            switch (type)
            {
                case Control or UserDefined:
                    added.Add(new AddedTokenEntry(id, text, Special: type == Control));
                    break;
                case Unused:
                    break;
                default:
                    vocabulary[text] = id;
                    break;
            }
        }
        string[] merges = [.. (file.Metadata.TryGetValue("tokenizer.ggml.merges", out GgufValue? m) ? m.AsArray() : []).Cast<string>()];
        string TokenOf(string key) => Required(key).AsInt64() is var id && id >= 0 && id < tokens.Count ? (string)tokens[(int)id]
            : throw new InvalidDataException($"{file.Path}: metadata '{key}' is {Required(key).AsInt64()}, not a token id.");
        string? template = file.Metadata.TryGetValue("tokenizer.chat_template", out GgufValue? c) ? c.AsString() : null;
        return new TokenizerDefinition(vocabulary, merges, added, TokenOf("tokenizer.ggml.bos_token_id"), TokenOf("tokenizer.ggml.eos_token_id"), template);
    }

    /// <summary>
    /// The metadata that carries the tokenizer of <paramref name="directory"/> (tokenizer.json and tokenizer_config.json),
    /// its token list padded to <paramref name="vocabSize"/> (llama.cpp takes the vocabulary size from it). Added
    /// tokens written as DeepSeek's markers (<c>&lt;｜…｜&gt;</c>) are control tokens, as llama.cpp's converter marks them.
    /// </summary>
    public static IEnumerable<(string Key, GgufValueType Type, object Value, GgufValueType? ElementType)> Metadata(string directory, int vocabSize)
    {
        TokenizerDefinition definition = TokenizerFiles.Read(directory);
        int count = Math.Max(vocabSize, Math.Max(definition.Vocabulary.Values.DefaultIfEmpty(-1).Max(), definition.AddedTokens.Select(a => a.Id).DefaultIfEmpty(-1).Max()) + 1);
        var tokens = new string[count];
        var types = new int[count];
        for (int id = 0; id < count; id++)
            (tokens[id], types[id]) = ($"[PAD{id}]", Unused);
        foreach ((string text, int id) in definition.Vocabulary)
            (tokens[id], types[id]) = (text, Normal);
        foreach (AddedTokenEntry token in definition.AddedTokens)
            (tokens[token.Id], types[token.Id]) = (token.Content, token.Special || LooksLikeMarker(token.Content) ? Control : UserDefined);
        int IdOf(string token) => Array.IndexOf(tokens, token);
        static bool LooksLikeMarker(string text) => text.StartsWith("<｜", StringComparison.Ordinal) && text.EndsWith("｜>", StringComparison.Ordinal);
        yield return ("tokenizer.ggml.model", GgufValueType.String, "gpt2", null);
        yield return ("tokenizer.ggml.pre", GgufValueType.String, "deepseek-v3", null);
        yield return ("tokenizer.ggml.tokens", GgufValueType.Array, tokens, GgufValueType.String);
        yield return ("tokenizer.ggml.token_type", GgufValueType.Array, types, GgufValueType.Int32);
        yield return ("tokenizer.ggml.merges", GgufValueType.Array, definition.Merges.ToArray(), GgufValueType.String);
        yield return ("tokenizer.ggml.bos_token_id", GgufValueType.UInt32, (uint)IdOf(definition.BosToken), null);
        yield return ("tokenizer.ggml.eos_token_id", GgufValueType.UInt32, (uint)IdOf(definition.EosToken), null);
        if (definition.ChatTemplate is { } template)
            yield return ("tokenizer.chat_template", GgufValueType.String, template, null);
    }
}
