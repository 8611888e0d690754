using System.Text.Encodings.Web;
using System.Text.Json;

namespace Ftransformers.Tokenization;

/// <summary>
/// Checks a tokenizer folder against a golden file made by an independent implementation
/// (<c>golden_encodings.json</c>: <c>cases</c> of text, ids and decoded text, and a rendered <c>chat_template</c>).
/// </summary>
public static class TokenizerVerifier
{
    private static readonly JsonSerializerOptions Readable = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Encodes every golden case and decodes its golden ids, then renders and encodes the golden conversation.
    /// </summary>
    /// <param name="tokenizerDirectory">The folder with <c>tokenizer.json</c> and <c>tokenizer_config.json</c>.</param>
    /// <param name="goldenFile">The golden file.</param>
    /// <exception cref="FileNotFoundException">A file is missing; the message names it.</exception>
    /// <exception cref="InvalidDataException">A file is not valid JSON or lacks a field; the message names the file and field.</exception>
    public static TokenizerVerificationResult Verify(string tokenizerDirectory, string goldenFile)
    {
        ArgumentNullException.ThrowIfNull(tokenizerDirectory);
        ArgumentNullException.ThrowIfNull(goldenFile);
        using JsonDocument golden = JsonFields.Parse(goldenFile, "Golden file");
        DeepSeekTokenizer tokenizer = DeepSeekTokenizer.Load(tokenizerDirectory);
        var descriptions = new List<string>();

        JsonElement cases = JsonFields.Required(golden.RootElement, "cases", goldenFile, "cases", JsonValueKind.Array);
        int caseCount = 0, mismatches = 0;
        foreach (JsonElement item in cases.EnumerateArray())
        {
            string field = $"cases[{caseCount}]";
            string text = JsonFields.Required(item, "text", goldenFile, field + ".text", JsonValueKind.String).GetString()!;
            int[] ids = ReadIds(item, goldenFile, field);
            string decoded = JsonFields.Required(item, "decoded", goldenFile, field + ".decoded", JsonValueKind.String).GetString()!;

            string name = $"case {caseCount} {Quote(text)}";
            bool idsMatch = CompareIds(name, ids, tokenizer.Encode(text), descriptions);
            bool decodeMatches = CompareText(name + " decode", decoded, tokenizer.Decode(ids), descriptions);
            if (!idsMatch || !decodeMatches)
                mismatches++;
            caseCount++;
        }

        JsonElement chat = JsonFields.Required(golden.RootElement, "chat_template", goldenFile, "chat_template", JsonValueKind.Object);
        IReadOnlyList<ChatMessage> messages = ReadMessages(chat, goldenFile);
        bool addGenerationPrompt = chat.TryGetProperty("add_generation_prompt", out JsonElement flag) && flag.ValueKind == JsonValueKind.True;
        string expectedText = JsonFields.Required(chat, "text", goldenFile, "chat_template.text", JsonValueKind.String).GetString()!;
        int[] expectedIds = ReadIds(chat, goldenFile, "chat_template");

        string rendered;
        try
        {
            rendered = DeepSeekChatTemplate.Render(messages, addGenerationPrompt, tokenizer.BosToken);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"'{goldenFile}': field 'chat_template.messages' cannot be rendered: {e.Message}", e);
        }
        bool textMatches = CompareText("chat_template text", expectedText, rendered, descriptions);
        bool chatIdsMatch = CompareIds("chat_template", expectedIds, tokenizer.Encode(expectedText), descriptions);

        return new TokenizerVerificationResult(caseCount, mismatches, textMatches && chatIdsMatch, descriptions);
    }

    private static bool CompareIds(string name, int[] expected, IReadOnlyList<int> actual, List<string> descriptions)
    {
        if (expected.SequenceEqual(actual))
            return true;
        int at = 0;
        while (at < expected.Length && at < actual.Count && expected[at] == actual[at])
            at++;
        string expectedAt = at < expected.Length ? expected[at].ToString() : "end";
        string actualAt = at < actual.Count ? actual[at].ToString() : "end";
        descriptions.Add($"{name}: ids differ at position {at}: expected {expectedAt}, got {actualAt} ({expected.Length} ids expected, {actual.Count} produced)");
        return false;
    }

    private static bool CompareText(string name, string expected, string actual, List<string> descriptions)
    {
        if (expected == actual)
            return true;
        int at = 0;
        while (at < expected.Length && at < actual.Length && expected[at] == actual[at])
            at++;
        descriptions.Add($"{name}: text differs at char {at}: expected {Quote(expected[at..])}, got {Quote(actual[at..])}");
        return false;
    }

    private static int[] ReadIds(JsonElement parent, string path, string field)
    {
        JsonElement ids = JsonFields.Required(parent, "ids", path, field + ".ids", JsonValueKind.Array);
        return ids.EnumerateArray().Select(id => id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out int value)
            ? value
            : throw new InvalidDataException($"'{path}': field '{field}.ids' holds {id.GetRawText()}, expected integers.")).ToArray();
    }

    // Messages in the OpenAI / Hugging Face shape: role, content (string or null), optional
    // tool_calls of {type, function: {name, arguments}}.
    private static List<ChatMessage> ReadMessages(JsonElement chat, string path)
    {
        var messages = new List<ChatMessage>();
        foreach (JsonElement message in JsonFields.Required(chat, "messages", path, "chat_template.messages", JsonValueKind.Array).EnumerateArray())
        {
            string field = $"chat_template.messages[{messages.Count}]";
            string role = JsonFields.Required(message, "role", path, field + ".role", JsonValueKind.String).GetString()!;
            string? content = message.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
            List<ToolCall>? toolCalls = null;
            if (message.TryGetProperty("tool_calls", out JsonElement calls) && calls.ValueKind == JsonValueKind.Array)
            {
                toolCalls = calls.EnumerateArray().Select(call =>
                {
                    JsonElement function = JsonFields.Required(call, "function", path, field + ".tool_calls[].function", JsonValueKind.Object);
                    string name = JsonFields.Required(function, "name", path, field + ".tool_calls[].function.name", JsonValueKind.String).GetString()!;
                    if (!function.TryGetProperty("arguments", out JsonElement arguments))
                        throw new InvalidDataException($"'{path}': missing field '{field}.tool_calls[].function.arguments'.");
                    string type = call.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "function";
                    return new ToolCall(name, arguments.ValueKind == JsonValueKind.String ? arguments.GetString()! : arguments.GetRawText(), type);
                }).ToList();
            }
            messages.Add(new ChatMessage(role, content, toolCalls));
        }
        return messages;
    }

    private static string Quote(string text) =>
        JsonSerializer.Serialize(text.Length <= 40 ? text : text[..40] + "...", Readable);
}
