using System.Text.Json;

namespace Ftransformers.Generation;

/// <summary>What shape the output must have.</summary>
public enum ResponseFormatKind
{
    /// <summary>Any text.</summary>
    Text,
    /// <summary>A JSON object.</summary>
    JsonObject,
    /// <summary>JSON valid against <see cref="ResponseFormat.Schema"/>.</summary>
    JsonSchema,
}

/// <summary>
/// The shape of the output. JSON formats are enforced while decoding: at each step the tokens that would break the
/// JSON (or the schema) are masked, so the output is always valid unless it is cut by <c>MaxTokens</c>.
/// </summary>
public sealed record ResponseFormat
{
    private ResponseFormat(ResponseFormatKind kind, JsonElement? schema, string? name)
    {
        Kind = kind;
        Schema = schema;
        Name = name;
    }

    /// <summary>Free text (the default).</summary>
    public static ResponseFormat Text { get; } = new(ResponseFormatKind.Text, null, null);

    /// <summary>Any JSON object.</summary>
    public static ResponseFormat JsonObject { get; } = new(ResponseFormatKind.JsonObject, null, null);

    /// <summary>JSON valid against <paramref name="schema"/> (the subset of JSON Schema OpenAI's structured outputs accept).</summary>
    public static ResponseFormat ForJsonSchema(JsonElement schema, string? name = null) => new(ResponseFormatKind.JsonSchema, schema.Clone(), name);

    /// <summary>Which format.</summary>
    public ResponseFormatKind Kind { get; }

    /// <summary>The schema, for <see cref="ResponseFormatKind.JsonSchema"/>.</summary>
    public JsonElement? Schema { get; }

    /// <summary>The schema's name, as the caller gave it.</summary>
    public string? Name { get; }
}
