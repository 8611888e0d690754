namespace Ftransformers.Generation;

/// <summary>
/// A piece of a tool call as it is generated, in the shape OpenAI streams them: a call's first piece carries its
/// <see cref="Id"/> and <see cref="Name"/>; every piece adds to its arguments. The pieces of a call, joined, are its
/// <see cref="GeneratedToolCall.Arguments"/>.
/// </summary>
/// <param name="Index">Which call of the turn (0, 1, ...).</param>
/// <param name="Id">The call's id, on its first piece only.</param>
/// <param name="Name">The function's name, on its first piece only.</param>
/// <param name="Arguments">More of the arguments' JSON text (may be empty).</param>
public sealed record ToolCallDelta(int Index, string? Id, string? Name, string Arguments);
