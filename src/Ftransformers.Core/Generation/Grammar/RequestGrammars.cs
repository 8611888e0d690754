using System.Collections.Concurrent;
using System.Text.Json;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation.Grammar;

/// <summary>
/// Turns a request's response format and tool choice into the grammar its output must follow, and keeps the compiled
/// grammars (and so their cached masks) for requests that ask for the same shape again. One per session; tool calls
/// are written in <paramref name="format"/>'s way.
/// </summary>
internal sealed class RequestGrammars(ITextTokenizer tokenizer, ChatFormat format)
{
    /// <summary>Grammars kept (each with up to 16 MB of masks on DeepSeek-V3's vocabulary); past this the cache starts afresh.</summary>
    private const int MaxGrammars = 16;

    private readonly ConcurrentDictionary<string, TokenGrammar> _grammars = new();

    /// <summary>The grammar of <paramref name="request"/>'s output, or null when the output is free.</summary>
    /// <exception cref="ArgumentException">A schema is unsupported or malformed (the message says where).</exception>
    public TokenGrammar? For(GenerationRequest request)
    {
        string? key = Key(request);
        if (key == null)
            return null;
        if (_grammars.TryGetValue(key, out TokenGrammar? grammar))
            return grammar;
        grammar = new TokenGrammar(Build(request), tokenizer);
        if (_grammars.Count >= MaxGrammars)
            _grammars.Clear();
        return _grammars.GetOrAdd(key, grammar);
    }

    /// <summary>Tokens the request may never produce: the tool-call opener when tools are present but not to be called.</summary>
    public IReadOnlyList<int> Banned(GenerationRequest request)
    {
        if (request.ToolChoice?.Mode != ToolChoiceMode.None)
            return [];
        IReadOnlyList<int> ids = tokenizer.Encode(DeepSeekChatTemplate.ToolCallsBegin);
        return ids.Count == 1 && tokenizer.IsAddedToken(ids[0]) ? ids : [];
    }

    private GrammarNode Build(GenerationRequest request)
    {
        GrammarNode? json = request.ResponseFormat.Kind switch
        {
            ResponseFormatKind.JsonObject => JsonSchemaGrammar.AnyObject,
            ResponseFormatKind.JsonSchema => JsonSchemaGrammar.Compile(request.ResponseFormat.Schema!.Value),
            _ => null,
        };
        IReadOnlyList<ToolDefinition> tools = request.Tools ?? [];
        switch (request.ToolChoice?.Mode ?? ToolChoiceMode.Auto)
        {
            case ToolChoiceMode.Function:
                return ToolCallGrammar.Build([.. tools.Where(t => t.Name == request.ToolChoice!.FunctionName)], parallel: false, tokenizer, format);
            case ToolChoiceMode.Required:
                return ToolCallGrammar.Build(tools, request.ParallelToolCalls, tokenizer, format);
            case ToolChoiceMode.Auto when tools.Count > 0 && json != null:
                // The model may call tools or answer, and the answer must have the requested shape.
                return new ChoiceNode([ToolCallGrammar.Build(tools, request.ParallelToolCalls, tokenizer, format, strict: false), json]);
            case ToolChoiceMode.Auto when tools.Count > 0:
                // The model may answer in free text or call tools; if it calls, the calls are well formed.
                return ToolCallGrammar.BuildAfterText(tools, request.ParallelToolCalls, tokenizer, format);
            default:
                return json!;
        }
    }

    private static string? Key(GenerationRequest request)
    {
        ToolChoiceMode mode = request.ToolChoice?.Mode ?? ToolChoiceMode.Auto;
        bool tools = mode != ToolChoiceMode.None && request.Tools is { Count: > 0 };
        if (!tools && request.ResponseFormat.Kind == ResponseFormatKind.Text)
            return null;
        var key = new Dictionary<string, object?>
        {
            ["format"] = request.ResponseFormat.Kind.ToString(),
            ["schema"] = request.ResponseFormat.Schema,
            ["choice"] = mode == ToolChoiceMode.None ? null : request.ToolChoice,
            ["parallel"] = request.ParallelToolCalls,
            ["tools"] = mode == ToolChoiceMode.None ? null : request.Tools?.Select(t => new { t.Name, t.Parameters }),
        };
        return JsonSerializer.Serialize(key);
    }
}
