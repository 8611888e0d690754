namespace Ftransformers.Generation.Grammar;

/// <summary>A JSON Schema the grammar compiler cannot honour: a keyword it does not support or a malformed value.</summary>
/// <param name="message">What is wrong.</param>
/// <param name="path">Where in the schema, as a JSON pointer (<c>#/properties/date/format</c>).</param>
public sealed class JsonSchemaException(string message, string path) : ArgumentException($"{message} (at {path})")
{
    /// <summary>Where in the schema the problem is, as a JSON pointer.</summary>
    public string SchemaPath { get; } = path;
}
