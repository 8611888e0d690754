using System.Text.Json;

namespace Ftransformers.Tokenization;

/// <summary>Reads JSON files whose errors must name the file and the field at fault.</summary>
internal static class JsonFields
{
    /// <summary>Parses <paramref name="path"/>; a missing file or invalid JSON is reported with the path.</summary>
    public static JsonDocument Parse(string path, string what)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{what} not found: '{path}'.", path);
        try
        {
            using FileStream stream = File.OpenRead(path);
            return JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>The member <paramref name="name"/> of <paramref name="parent"/>, which must exist and be of <paramref name="kind"/>.</summary>
    /// <param name="parent">The object holding the field.</param>
    /// <param name="name">The member name.</param>
    /// <param name="path">The file, for the error message.</param>
    /// <param name="fieldPath">The field's full name in the file (such as <c>model.vocab</c>), for the error message.</param>
    /// <param name="kind">The expected kind.</param>
    public static JsonElement Required(JsonElement parent, string name, string path, string fieldPath, JsonValueKind kind)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out JsonElement value))
            throw new InvalidDataException($"'{path}': missing field '{fieldPath}'.");
        if (value.ValueKind != kind)
            throw new InvalidDataException($"'{path}': field '{fieldPath}' is {value.ValueKind}, expected {kind}.");
        return value;
    }
}
