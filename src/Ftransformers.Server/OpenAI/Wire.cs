using System.Text.Json.Serialization;

namespace Ftransformers.Server.OpenAI;

// The response shapes of OpenAI's API, as the official clients parse them. Null members are left out, except
// those OpenAI always writes (finish_reason, error param and code).

internal sealed record ErrorBody(ErrorDetail Error);

internal sealed record ErrorDetail(
    string Message,
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);

internal sealed record PromptTokensDetails(int CachedTokens);

internal sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens, PromptTokensDetails PromptTokensDetails);

internal sealed record AssistantMessage(
    string Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Content,
    string? ReasoningContent,
    IReadOnlyList<ToolCallWire>? ToolCalls);

internal sealed record FunctionCallWire(string? Name, string? Arguments);

/// <summary>A tool call; <c>index</c> is written in streamed deltas only.</summary>
internal sealed record ToolCallWire(int? Index, string? Id, string? Type, FunctionCallWire Function);

internal sealed record TopLogprobWire(string Token, float Logprob, int[] Bytes);

internal sealed record TokenLogprobWire(string Token, float Logprob, int[] Bytes, IReadOnlyList<TopLogprobWire> TopLogprobs);

internal sealed record ChatLogprobs(IReadOnlyList<TokenLogprobWire> Content);

internal sealed record TextLogprobs(IReadOnlyList<string> Tokens, IReadOnlyList<float> TokenLogprobs, IReadOnlyList<Dictionary<string, float>>? TopLogprobs, IReadOnlyList<int> TextOffset);

internal sealed record ChatChoice(
    int Index,
    AssistantMessage Message,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason,
    ChatLogprobs? Logprobs);

internal sealed record ChatCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage Usage);

internal sealed record ChatDelta(string? Role, string? Content, string? ReasoningContent, IReadOnlyList<ToolCallWire>? ToolCalls);

internal sealed record ChatChunkChoice(
    int Index,
    ChatDelta Delta,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason,
    ChatLogprobs? Logprobs);

internal sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices, Usage? Usage);

internal sealed record TextChoice(
    int Index,
    string Text,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason,
    TextLogprobs? Logprobs);

internal sealed record TextCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<TextChoice> Choices, Usage? Usage);

internal sealed record ModelCard(string Id, string Object, long Created, string OwnedBy, int MaxModelLen, string? Quantization);

internal sealed record ModelList(string Object, IReadOnlyList<ModelCard> Data);

internal sealed record HealthStatus(string Status, string Model, int RunningRequests, int WaitingRequests);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ErrorBody))]
[JsonSerializable(typeof(ChatCompletion))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(TextCompletion))]
[JsonSerializable(typeof(ModelCard))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(HealthStatus))]
internal sealed partial class WireJson : JsonSerializerContext;
