using System.Text.Json;
using Ftransformers.Tokenization;

namespace Ftransformers.Cli.Bench;

/// <summary>
/// Prompts from a JSONL file, one request per line: <c>{"prompt": "..."}</c> or <c>{"messages": [{"role": ..., "content": ...}]}</c>,
/// with an optional <c>"max_tokens"</c> (else the run's output length). Requests take the lines in order, wrapping around.
/// </summary>
internal sealed class DatasetPrompts
{
    private readonly List<BenchPrompt> _prompts = [];

    public int Count => _prompts.Count;

    /// <exception cref="InvalidDataException">A line is not JSON of that shape; the message names the file and line.</exception>
    public static DatasetPrompts Load(string path, BenchApi api)
    {
        var dataset = new DatasetPrompts();
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            string where = $"{path} line {number}";
            try
            {
                using JsonDocument document = JsonDocument.Parse(line);
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"{where}: expected a JSON object.");
                int? maxTokens = root.TryGetProperty("max_tokens", out JsonElement max)
                    ? max.ValueKind == JsonValueKind.Number && max.TryGetInt32(out int m) && m >= 1 ? m : throw new InvalidDataException($"{where}: max_tokens must be a positive integer.")
                    : null;
                BenchPrompt prompt;
                if (root.TryGetProperty("prompt", out JsonElement text) && text.ValueKind == JsonValueKind.String)
                {
                    prompt = new BenchPrompt("", text.GetString()!);
                }
                else if (root.TryGetProperty("messages", out JsonElement messages) && messages.ValueKind == JsonValueKind.Array && messages.GetArrayLength() > 0)
                {
                    if (api != BenchApi.Chat)
                        throw new InvalidDataException($"{where}: messages need the chat API (--api chat).");
                    prompt = new BenchPrompt("", "") { Messages = [.. messages.EnumerateArray().Select(m => Message(m, where))] };
                }
                else
                {
                    throw new InvalidDataException($"{where}: expected \"prompt\" (a string) or \"messages\" (a non-empty array).");
                }
                dataset._prompts.Add(prompt with { MaxTokens = maxTokens });
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{where}: not JSON ({e.Message}).");
            }
        }
        if (dataset.Count == 0)
            throw new InvalidDataException($"{path} holds no prompts.");
        return dataset;
    }

    private static ChatMessage Message(JsonElement message, string where)
    {
        string? role = message.TryGetProperty("role", out JsonElement r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
        string? content = message.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
        return (role, content) switch
        {
            ("system", { } text) => ChatMessage.System(text),
            ("user", { } text) => ChatMessage.User(text),
            ("assistant", { } text) => ChatMessage.Assistant(text),
            _ => throw new InvalidDataException($"{where}: each message needs a role (system, user or assistant) and string content."),
        };
    }

    /// <summary>The prompt of request <paramref name="index"/>.</summary>
    public BenchPrompt Prompt(int index) => _prompts[(int)((uint)index % (uint)_prompts.Count)];
}
