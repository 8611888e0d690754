using System.Text.Json;

namespace Ftransformers.Tokenization;

/// <summary>A function the model may call.</summary>
/// <param name="Name">The function's name.</param>
/// <param name="Description">What it does, for the model.</param>
/// <param name="Parameters">A JSON Schema of its arguments object; null: any object. Forced calls are held to it.</param>
public sealed record ToolDefinition(string Name, string? Description = null, JsonElement? Parameters = null);
