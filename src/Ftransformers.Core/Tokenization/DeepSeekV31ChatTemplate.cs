using System.Text;

namespace Ftransformers.Tokenization;

/// <summary>
/// The chat template of DeepSeek-V3.1, written out in C# as its Jinja template behaves: system prompts joined after
/// BOS; an assistant turn right after a user turn opens with <c>&lt;｜Assistant｜&gt;</c> and, outside thinking,
/// <c>&lt;/think&gt;</c>; calls as <c>&lt;｜tool▁call▁begin｜&gt;NAME&lt;｜tool▁sep｜&gt;ARGUMENTS&lt;｜tool▁call▁end｜&gt;</c> chained
/// inside one calls block; each tool output in its own block; earlier reasoning (up to <c>&lt;/think&gt;</c>) dropped
/// from assistant turns.
/// </summary>
public static class DeepSeekV31ChatTemplate
{
    private const string User = DeepSeekChatTemplate.User, Assistant = DeepSeekChatTemplate.Assistant, EndOfSentence = DeepSeekChatTemplate.EndOfSentence;
    private const string ToolOutputBegin = DeepSeekChatTemplate.ToolOutputBegin, ToolOutputEnd = DeepSeekChatTemplate.ToolOutputEnd;
    private const string ThinkOpen = "<think>", ThinkClose = "</think>";

    /// <summary>Renders a conversation to the prompt text DeepSeek-V3.1 was trained on.</summary>
    /// <param name="messages">The conversation, in order.</param>
    /// <param name="addGenerationPrompt">Whether to end with the assistant's opener after a user turn.</param>
    /// <param name="bosToken">The BOS token text.</param>
    /// <param name="tools">Functions the model may call; described after the system prompt.</param>
    /// <param name="thinking">Whether the answer starts with reasoning (<c>&lt;think&gt;</c>) or without (<c>&lt;/think&gt;</c>).</param>
    /// <exception cref="ArgumentException">A message has an unknown role, or lacks the content its role needs.</exception>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bosToken, IReadOnlyList<ToolDefinition>? tools = null, bool thinking = false)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(bosToken);
        DeepSeekChatTemplate.Validate(messages);

        var prompt = new StringBuilder(bosToken);
        prompt.AppendJoin("\n\n", messages.Where(m => m.Role == ChatMessage.SystemRole).Select(m => m.Content));
        if (tools is { Count: > 0 })
            AppendTools(prompt, tools, separate: messages.Any(m => m.Role == ChatMessage.SystemRole));

        bool lastWasUser = false, inToolOutputs = false;
        foreach (ChatMessage message in messages)
        {
            switch (message.Role)
            {
                case ChatMessage.UserRole:
                    inToolOutputs = false;
                    lastWasUser = true;
                    prompt.Append(User).Append(message.Content);
                    break;

                case ChatMessage.AssistantRole when message.ToolCalls is { Count: > 0 }:
                    if (lastWasUser)
                        prompt.Append(Assistant).Append(ThinkClose);
                    lastWasUser = inToolOutputs = false;
                    prompt.Append(message.Content).Append(DeepSeekChatTemplate.ToolCallsBegin);
                    foreach (ToolCall call in message.ToolCalls)
                        prompt.Append(DeepSeekChatTemplate.ToolCallBegin).Append(call.Name).Append(DeepSeekChatTemplate.ToolSep)
                              .Append(call.Arguments).Append(DeepSeekChatTemplate.ToolCallEnd);
                    prompt.Append(DeepSeekChatTemplate.ToolCallsEnd).Append(EndOfSentence);
                    break;

                case ChatMessage.AssistantRole:
                    if (lastWasUser)
                        prompt.Append(Assistant).Append(ThinkClose);
                    lastWasUser = false;
                    string content = message.Content ?? "";
                    // Reasoning of earlier turns is not shown again (after tool outputs the template keeps it).
                    int close = content.IndexOf(ThinkClose, StringComparison.Ordinal);
                    if (!inToolOutputs && close >= 0)
                        content = content[(close + ThinkClose.Length)..];
                    prompt.Append(content).Append(EndOfSentence);
                    inToolOutputs = false;
                    break;

                case ChatMessage.ToolRole:
                    lastWasUser = false;
                    inToolOutputs = true;
                    prompt.Append(ToolOutputBegin).Append(message.Content).Append(ToolOutputEnd);
                    break;
            }
        }

        if (addGenerationPrompt && lastWasUser)
            prompt.Append(Assistant).Append(thinking ? ThinkOpen : ThinkClose);
        return prompt.ToString();
    }

    // V3.1's model card describes tools in the system prompt in this shape: a section per tool with its description
    // and parameters, then the call format.
    private static void AppendTools(StringBuilder prompt, IReadOnlyList<ToolDefinition> tools, bool separate)
    {
        if (separate)
            prompt.Append("\n\n");
        prompt.Append("## Tools\nYou have access to the following tools:\n\n");
        foreach (ToolDefinition tool in tools)
        {
            prompt.Append("### ").Append(tool.Name).Append('\n');
            prompt.Append("Description: ").Append(tool.Description ?? "").Append("\n\n");
            prompt.Append("Parameters: ").Append(tool.Parameters is { } p ? DeepSeekChatTemplate.CompactJson(p) : "{}").Append("\n\n");
        }
        prompt.Append("To call tools, write exactly: ").Append(DeepSeekChatTemplate.ToolCallsBegin).Append(DeepSeekChatTemplate.ToolCallBegin)
              .Append("tool_name").Append(DeepSeekChatTemplate.ToolSep).Append("arguments as JSON").Append(DeepSeekChatTemplate.ToolCallEnd)
              .Append(", further calls directly after, then ").Append(DeepSeekChatTemplate.ToolCallsEnd)
              .Append(". The name must be one of the tools above and the arguments must follow its Parameters schema.\n");
    }
}
