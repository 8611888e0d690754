using System.Text;

namespace Ftransformers.Tokenization;

/// <summary>
/// The chat template of DeepSeek-V3/R1 (the Jinja <c>chat_template</c> in <c>tokenizer_config.json</c>),
/// written out in C#. It mirrors the template exactly, quirks included: the tool-call opener
/// (<c>&lt;｜Assistant｜&gt;&lt;｜tool▁calls▁begin｜&gt;</c>) and the tool-output opener are written only once per
/// conversation, a call after the first in a message is followed by
/// <c>&lt;｜tool▁calls▁end｜&gt;&lt;｜end▁of▁sentence｜&gt;</c> each time, a single call is never closed, and a user
/// turn after tool outputs drops <c>&lt;｜tool▁outputs▁end｜&gt;</c>. Earlier <c>&lt;think&gt;</c> blocks are kept,
/// as the template keeps them.
/// </summary>
public static class DeepSeekChatTemplate
{
    /// <summary>Opens the model's tool calls.</summary>
    public const string ToolCallsBegin = "<｜tool▁calls▁begin｜>";

    /// <summary>Closes the model's tool calls.</summary>
    public const string ToolCallsEnd = "<｜tool▁calls▁end｜>";

    /// <summary>Opens one tool call.</summary>
    public const string ToolCallBegin = "<｜tool▁call▁begin｜>";

    /// <summary>Closes one tool call.</summary>
    public const string ToolCallEnd = "<｜tool▁call▁end｜>";

    /// <summary>Separates a call's type from its function name.</summary>
    public const string ToolSep = "<｜tool▁sep｜>";

    internal const string User = "<｜User｜>";
    internal const string Assistant = "<｜Assistant｜>";
    internal const string EndOfSentence = "<｜end▁of▁sentence｜>";
    private const string ToolOutputsBegin = "<｜tool▁outputs▁begin｜>";
    private const string ToolOutputsEnd = "<｜tool▁outputs▁end｜>";
    internal const string ToolOutputBegin = "<｜tool▁output▁begin｜>";
    internal const string ToolOutputEnd = "<｜tool▁output▁end｜>";

    /// <summary>Renders a conversation to the prompt text the model was trained on.</summary>
    /// <param name="messages">The conversation, in order.</param>
    /// <param name="addGenerationPrompt">Whether to end with <c>&lt;｜Assistant｜&gt;</c> so the model answers next
    /// (not written when the last message is a tool output, as in the template).</param>
    /// <param name="bosToken">The BOS token text, usually <see cref="DeepSeekTokenizer.BosToken"/>.</param>
    /// <param name="tools">Functions the model may call; described after the system prompt (the checkpoint's template
    /// has no place for them, so they are written as DeepSeek's serving stacks write them).</param>
    /// <returns>The prompt; encode it with <see cref="DeepSeekTokenizer.Encode"/> (it already holds BOS).</returns>
    /// <exception cref="ArgumentException">A message has an unknown role, or lacks the content its role needs.</exception>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bosToken, IReadOnlyList<ToolDefinition>? tools = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(bosToken);
        Validate(messages);

        var prompt = new StringBuilder(bosToken);
        prompt.AppendJoin("\n\n", messages.Where(m => m.Role == ChatMessage.SystemRole).Select(m => m.Content));
        if (tools is { Count: > 0 })
            AppendTools(prompt, tools, separate: messages.Any(m => m.Role == ChatMessage.SystemRole));

        bool toolCallsOpened = false;   // the template's ns.is_first: never reset
        bool inToolOutputs = false;     // ns.is_tool
        bool firstToolOutput = true;    // ns.is_output_first: never reset
        foreach (ChatMessage message in messages)
        {
            switch (message.Role)
            {
                case ChatMessage.UserRole:
                    inToolOutputs = false;
                    prompt.Append(User).Append(message.Content);
                    break;

                case ChatMessage.AssistantRole when message.Content is null:
                    inToolOutputs = false;
                    foreach (ToolCall call in message.ToolCalls ?? [])
                    {
                        if (!toolCallsOpened)
                        {
                            prompt.Append(Assistant).Append(ToolCallsBegin);
                            AppendCall(prompt, call);
                            toolCallsOpened = true;
                        }
                        else
                        {
                            prompt.Append('\n');
                            AppendCall(prompt, call);
                            prompt.Append(ToolCallsEnd).Append(EndOfSentence);
                        }
                    }
                    break;

                case ChatMessage.AssistantRole:
                    prompt.Append(inToolOutputs ? ToolOutputsEnd : Assistant).Append(message.Content).Append(EndOfSentence);
                    inToolOutputs = false;
                    break;

                case ChatMessage.ToolRole:
                    inToolOutputs = true;
                    prompt.Append(firstToolOutput ? ToolOutputsBegin : "\n").Append(ToolOutputBegin).Append(message.Content).Append(ToolOutputEnd);
                    firstToolOutput = false;
                    break;
            }
        }

        if (inToolOutputs)
            prompt.Append(ToolOutputsEnd);
        else if (addGenerationPrompt)
            prompt.Append(Assistant);
        return prompt.ToString();
    }

    private static void AppendTools(StringBuilder prompt, IReadOnlyList<ToolDefinition> tools, bool separate)
    {
        if (separate)
            prompt.Append("\n\n");
        prompt.Append("## Tools\n\n### Function\n\nYou have the following functions available:\n");
        foreach (ToolDefinition tool in tools)
        {
            var definition = new Dictionary<string, object?> { ["name"] = tool.Name };
            if (tool.Description != null)
                definition["description"] = tool.Description;
            definition["parameters"] = tool.Parameters;
            prompt.Append("\n- `").Append(tool.Name).Append("`:\n```json\n")
                  .Append(System.Text.Json.JsonSerializer.Serialize(definition, ToolJson)).Append("\n```\n");
        }
    }

    /// <summary>A JSON value written compactly, non-ASCII as is (as tool schemas are shown to the model).</summary>
    internal static string CompactJson(System.Text.Json.JsonElement value) => System.Text.Json.JsonSerializer.Serialize(value, ToolJson);

    private static readonly System.Text.Json.JsonSerializerOptions ToolJson = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    private static void AppendCall(StringBuilder prompt, ToolCall call) =>
        prompt.Append(ToolCallBegin).Append(call.Type).Append(ToolSep).Append(call.Name)
              .Append("\n```json\n").Append(call.Arguments).Append("\n```").Append(ToolCallEnd);

    // The Jinja template would fail on a missing content (string + None) and skip an unknown role
    // silently; both are caller bugs, so say which message is at fault. An assistant message with
    // neither content nor tool calls renders as nothing, as in the template.
    internal static void Validate(IReadOnlyList<ChatMessage> messages)
    {
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i] ?? throw new ArgumentException($"Message {i} is null.", nameof(messages));
            switch (message.Role)
            {
                case ChatMessage.SystemRole or ChatMessage.UserRole or ChatMessage.ToolRole when message.Content is null:
                    throw new ArgumentException($"Message {i} (role '{message.Role}') has no content.", nameof(messages));
                case ChatMessage.SystemRole or ChatMessage.UserRole or ChatMessage.AssistantRole or ChatMessage.ToolRole:
                    break;
                default:
                    throw new ArgumentException($"Message {i} has unknown role '{message.Role}'; expected system, user, assistant or tool.", nameof(messages));
            }
        }
    }
}
