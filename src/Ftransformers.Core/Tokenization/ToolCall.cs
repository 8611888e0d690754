namespace Ftransformers.Tokenization;

/// <summary>A function call made by the assistant, as rendered by the DeepSeek-V3 chat template.</summary>
/// <param name="Name">The function's name.</param>
/// <param name="Arguments">The arguments as JSON text, written into the prompt verbatim.</param>
/// <param name="Type">The call type; the template writes it before the name (always "function" in practice).</param>
public sealed record ToolCall(string Name, string Arguments, string Type = "function");
