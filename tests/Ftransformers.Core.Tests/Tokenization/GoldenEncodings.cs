using System.Text.Json;

namespace Ftransformers.Tests.Tokenization;

/// <summary>The cases of the shared <c>golden_encodings.json</c>, read without the code under test.</summary>
internal static class GoldenEncodings
{
    public sealed record Case(string Text, int[] Ids, string Decoded);

    public sealed record ChatCase(JsonElement Messages, bool AddGenerationPrompt, string Text, int[] Ids);

    public static string FilePath => Path.Combine(Fixtures.Tokenizer, "golden_encodings.json");

    public static IReadOnlyList<Case> Cases()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(FilePath));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new Case(
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                c.GetProperty("decoded").GetString()!))
            .ToList();
    }

    public static ChatCase Chat()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(FilePath));
        JsonElement chat = doc.RootElement.GetProperty("chat_template");
        return new ChatCase(
            chat.GetProperty("messages").Clone(),
            chat.GetProperty("add_generation_prompt").GetBoolean(),
            chat.GetProperty("text").GetString()!,
            chat.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray());
    }
}
