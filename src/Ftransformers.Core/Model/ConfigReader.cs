using System.Text.Json;
using System.Text.Json.Nodes;

namespace Ftransformers.Model;

/// <summary>Typed reads of config.json fields with errors that name the file and field.</summary>
internal sealed class ConfigReader(JsonObject node, string source)
{
    public int Int(string field, int? fallback = null, int min = 1)
    {
        int value = node[field] is { } v ? Number(field, v, n => n.GetValue<double>() is var d && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue ? (int)d : throw Bad(field, "an integer")) : fallback ?? throw Missing(field);
        if (value < min)
            throw new InvalidDataException($"{source}: field '{field}' is {value}, must be at least {min}.");
        return value;
    }

    public int? NullableInt(string field, int min = 1) => node[field] is null ? null : Int(field, min: min);

    public double Double(string field, double? fallback = null) =>
        node[field] is { } v ? Number(field, v, n => n.GetValue<double>()) : fallback ?? throw Missing(field);

    public bool Bool(string field, bool fallback) =>
        node[field] is { } v ? (v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : throw Bad(field, "true or false")) : fallback;

    public string String(string field, string? fallback = null) =>
        node[field] is { } v ? (v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Bad(field, "a string")) : fallback ?? throw Missing(field);

    /// <summary>An integer or a list of integers (as eos_token_id may be).</summary>
    public IReadOnlyList<int> IntList(string field) => node[field] switch
    {
        null => [],
        JsonArray a => a.Select(x => x is not null && x.GetValueKind() == JsonValueKind.Number ? x.GetValue<int>() : throw Bad(field, "a list of integers")).ToArray(),
        var v => [Int(field, min: 0)],
    };

    private T Number<T>(string field, JsonNode value, Func<JsonNode, T> read) =>
        value.GetValueKind() == JsonValueKind.Number ? read(value) : throw Bad(field, "a number");

    private InvalidDataException Missing(string field) => new($"{source}: required field '{field}' is missing.");

    private InvalidDataException Bad(string field, string expected) => new($"{source}: field '{field}' must be {expected}.");
}
