namespace Ftransformers.Generation;

/// <summary>A tool call the model made.</summary>
/// <param name="Id">A unique id; the tool's result message refers to it.</param>
/// <param name="Name">The function called.</param>
/// <param name="Arguments">Its arguments, as JSON text.</param>
public sealed record GeneratedToolCall(string Id, string Name, string Arguments);
