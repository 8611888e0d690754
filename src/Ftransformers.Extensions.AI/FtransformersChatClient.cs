using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Ftransformers.Generation;
using Ftransformers.Tokenization;
using Microsoft.Extensions.AI;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using EngineChatMessage = Ftransformers.Tokenization.ChatMessage;
using EngineToolCall = Ftransformers.Tokenization.ToolCall;

namespace Ftransformers.Extensions.AI;

/// <summary>
/// An <see cref="IChatClient"/> that runs conversations on an in-process <see cref="IInferenceSession"/>: the messages are
/// rendered with the model's chat format, <see cref="ChatOptions"/> become sampling settings, and DeepSeek-R1's
/// <c>&lt;think&gt;</c> block comes back as <see cref="TextReasoningContent"/>. Functions in <see cref="ChatOptions.Tools"/>
/// are offered to the model and its calls come back as <see cref="FunctionCallContent"/> (so
/// <c>UseFunctionInvocation()</c> and Semantic Kernel can run them); <see cref="ChatOptions.ResponseFormat"/> JSON and
/// forced tool modes are enforced while decoding.
/// </summary>
public sealed class FtransformersChatClient : IChatClient
{
    /// <summary>The provider name in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "ftransformers";

    private readonly IInferenceSession _session;
    private readonly ChatClientMetadata _metadata;

    /// <summary>Creates a client over <paramref name="session"/> (not owned: disposing the client leaves it loaded).</summary>
    /// <param name="session">The session that generates.</param>
    /// <param name="modelId">The model id reported in responses; defaults to "ftransformers".</param>
    public FtransformersChatClient(IInferenceSession session, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        _session = session;
        _metadata = new ChatClientMetadata(ProviderName, defaultModelId: modelId ?? ProviderName);
    }

    /// <summary>The model id reported in responses.</summary>
    public string ModelId => _metadata.DefaultModelId!;

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var reasoning = new StringBuilder();
        var text = new StringBuilder();
        var calls = new List<FunctionCallContent>();
        ChatResponseUpdate? last = null;
        UsageDetails? usage = null;
        await foreach (ChatResponseUpdate update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            foreach (AIContent content in update.Contents)
            {
                switch (content)
                {
                    case TextReasoningContent r: reasoning.Append(r.Text); break;
                    case TextContent t: text.Append(t.Text); break;
                    case FunctionCallContent c: calls.Add(c); break;
                    case UsageContent u: usage = u.Details; break;
                }
            }
            last = update;
        }

        var contents = new List<AIContent>();
        if (reasoning.Length > 0)
            contents.Add(new TextReasoningContent(reasoning.ToString()));
        if (text.Length > 0 || calls.Count == 0)
            contents.Add(new TextContent(text.ToString()));
        contents.AddRange(calls);
        return new ChatResponse(new AIChatMessage(ChatRole.Assistant, contents) { MessageId = last?.MessageId, CreatedAt = last?.CreatedAt })
        {
            ResponseId = last?.ResponseId,
            ModelId = ModelId,
            CreatedAt = last?.CreatedAt,
            FinishReason = last?.FinishReason,
            Usage = usage,
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        GenerationRequest request = ToRequest(messages, options, _session.Config.MaxPositionEmbeddings);
        string responseId = "chatcmpl-" + Guid.NewGuid().ToString("N");
        DateTimeOffset created = DateTimeOffset.UtcNow;
        var parser = new ReasoningParser();

        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId,
            MessageId = responseId,
            ModelId = ModelId,
            CreatedAt = created,
        };

        await foreach (GenerationChunk chunk in _session.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            (string thought, string answer) = parser.Append(chunk.Text);
            if (chunk.FinishReason != null)
            {
                (string restThought, string restAnswer) = parser.Flush();
                thought += restThought;
                answer += restAnswer;
            }
            List<AIContent> contents = Contents(thought, answer);
            foreach (GeneratedToolCall call in chunk.ToolCalls)
                contents.Add(FunctionCallContent.CreateFromParsedArguments(call.Arguments, call.Id, call.Name,
                    static json => JsonSerializer.Deserialize<Dictionary<string, object?>>(json)));
            if (chunk.FinishReason is { } reason)
            {
                GenerationUsage usage = chunk.Usage!;
                contents.Add(new UsageContent(new UsageDetails
                {
                    InputTokenCount = usage.PromptTokens,
                    OutputTokenCount = usage.CompletionTokens,
                    TotalTokenCount = usage.TotalTokens,
                    CachedInputTokenCount = usage.CachedPromptTokens,
                }));
                ChatResponseUpdate final = Update(contents);
                final.FinishReason = reason switch
                {
                    FinishReason.Length => ChatFinishReason.Length,
                    FinishReason.ToolCalls => ChatFinishReason.ToolCalls,
                    _ => ChatFinishReason.Stop,
                };
                yield return final;
            }
            else if (contents.Count > 0)
            {
                yield return Update(contents);
            }
        }
    }

    private static List<AIContent> Contents(string reasoning, string answer)
    {
        var contents = new List<AIContent>(2);
        if (reasoning.Length > 0)
            contents.Add(new TextReasoningContent(reasoning));
        if (answer.Length > 0)
            contents.Add(new TextContent(answer));
        return contents;
    }

    /// <summary>
    /// The generation request for a conversation: messages in the engine's shape and <paramref name="options"/> as
    /// sampling settings. Without <see cref="ChatOptions.MaxOutputTokens"/>, generation may run to the end of the context.
    /// </summary>
    /// <exception cref="NotSupportedException">A message holds content other than text, function calls and results; a tool
    /// is not a function; or <see cref="ChatOptions.ConversationId"/> is set (the engine keeps no conversations).</exception>
    /// <exception cref="ArgumentException">An option is out of range, named in the message.</exception>
    public static GenerationRequest ToRequest(IEnumerable<AIChatMessage> messages, ChatOptions? options, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (options?.ConversationId != null)
            throw new NotSupportedException("ChatOptions.ConversationId is not supported: Ftransformers keeps no conversations; send the whole history.");

        var converted = new List<EngineChatMessage>();
        if (!string.IsNullOrEmpty(options?.Instructions))
            converted.Add(EngineChatMessage.System(options.Instructions));
        int index = 0;
        foreach (AIChatMessage message in messages)
            converted.AddRange(ToEngineMessages(message, index++));

        long? seed = options?.Seed;
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? 1f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            // A 64-bit seed folds to 32 bits; equal seeds still give equal outputs.
            Seed = seed is { } s ? unchecked((int)(s ^ (s >> 32))) : null,
            PresencePenalty = options?.PresencePenalty ?? 0,
            FrequencyPenalty = options?.FrequencyPenalty ?? 0,
        };
        IReadOnlyList<ToolDefinition>? tools = options?.Tools is { Count: > 0 } offered ? [.. offered.Select(ToTool)] : null;
        var request = new GenerationRequest
        {
            Messages = converted,
            MaxTokens = options?.MaxOutputTokens ?? contextLength,
            Sampling = sampling,
            Stop = options?.StopSequences is { } stop ? [.. stop] : [],
            Tools = tools,
            ToolChoice = tools == null ? null : options!.ToolMode switch
            {
                NoneChatToolMode => ToolChoice.None,
                RequiredChatToolMode { RequiredFunctionName: { } name } => ToolChoice.Function(name),
                RequiredChatToolMode => ToolChoice.Required,
                _ => ToolChoice.Auto,
            },
            ParallelToolCalls = options?.AllowMultipleToolCalls ?? true,
            ResponseFormat = options?.ResponseFormat switch
            {
                ChatResponseFormatJson { Schema: { } schema } json => ResponseFormat.ForJsonSchema(schema, json.SchemaName),
                ChatResponseFormatJson => ResponseFormat.JsonObject,
                _ => ResponseFormat.Text,
            },
        };
        request.Validate();
        return request;
    }

    private static ToolDefinition ToTool(AITool tool) => tool is AIFunctionDeclaration function
        ? new ToolDefinition(function.Name, function.Description, function.JsonSchema)
        : throw new NotSupportedException($"Tool '{tool.Name}' is a {tool.GetType().Name}; Ftransformers runs function tools only.");

    private static IEnumerable<EngineChatMessage> ToEngineMessages(AIChatMessage message, int index)
    {
        string role = message.Role.Value;
        if (message.Role == ChatRole.Tool)
        {
            // Each function result is one tool turn in the DeepSeek format.
            foreach (AIContent content in message.Contents)
            {
                if (content is FunctionResultContent result)
                    yield return EngineChatMessage.Tool(result.Result switch { null => "", string s => s, JsonElement e => e.ToString(), object o => JsonSerializer.Serialize(o) });
                else if (content is TextContent text)
                    yield return EngineChatMessage.Tool(text.Text);
                else
                    throw Unsupported(content, index);
            }
            yield break;
        }

        var builder = new StringBuilder();
        var calls = new List<EngineToolCall>();
        foreach (AIContent content in message.Contents)
        {
            switch (content)
            {
                case TextContent text: builder.Append(text.Text); break;
                case TextReasoningContent: break; // earlier reasoning is not sent back to the model
                case FunctionCallContent call: calls.Add(new EngineToolCall(call.Name, JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>()))); break;
                case UsageContent: break;
                default: throw Unsupported(content, index);
            }
        }

        if (message.Role == ChatRole.Assistant && calls.Count > 0)
            yield return EngineChatMessage.AssistantToolCalls([.. calls]);
        else if (message.Role == ChatRole.System || message.Role == ChatRole.User || message.Role == ChatRole.Assistant)
            yield return new EngineChatMessage(role, builder.ToString());
        else
            throw new ArgumentException($"Message {index} has role '{role}'; expected system, user, assistant or tool.", nameof(message));
    }

    private static NotSupportedException Unsupported(AIContent content, int index) =>
        new($"Message {index} holds {content.GetType().Name}; Ftransformers accepts text, function calls and function results.");

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return _metadata;
        if (serviceType.IsInstanceOfType(_session))
            return _session;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Does nothing: the session belongs to whoever created it.</summary>
    public void Dispose()
    {
    }
}
