namespace Ftransformers.Tokenization;

/// <summary>One message of a conversation, in the shape the DeepSeek-V3 chat template reads.</summary>
/// <param name="Role">"system", "user", "assistant" or "tool".</param>
/// <param name="Content">The text; <see langword="null"/> only for an assistant message that makes tool calls.</param>
/// <param name="ToolCalls">The assistant's tool calls; the template renders them only when <paramref name="Content"/> is null.</param>
public sealed record ChatMessage(string Role, string? Content, IReadOnlyList<ToolCall>? ToolCalls = null)
{
    /// <summary>The role of system prompts; all of them are joined and placed right after BOS.</summary>
    public const string SystemRole = "system";

    /// <summary>The role of the user's turns.</summary>
    public const string UserRole = "user";

    /// <summary>The role of the model's turns, with text or with tool calls.</summary>
    public const string AssistantRole = "assistant";

    /// <summary>The role of a tool's output, sent back after the assistant's tool calls.</summary>
    public const string ToolRole = "tool";

    /// <summary>A system prompt.</summary>
    public static ChatMessage System(string content) => new(SystemRole, content);

    /// <summary>A user turn.</summary>
    public static ChatMessage User(string content) => new(UserRole, content);

    /// <summary>An assistant turn with text.</summary>
    public static ChatMessage Assistant(string content) => new(AssistantRole, content);

    /// <summary>An assistant turn that calls tools instead of answering with text.</summary>
    public static ChatMessage AssistantToolCalls(params ToolCall[] toolCalls) => new(AssistantRole, null, toolCalls);

    /// <summary>The output of one tool call.</summary>
    public static ChatMessage Tool(string content) => new(ToolRole, content);
}
