using Ftransformers.Tokenization;

namespace Ftransformers.Generation.Grammar;

/// <summary>
/// The grammar of tool calls as the chat template writes them. DeepSeek-V3:
/// <c>&lt;｜tool▁calls▁begin｜&gt;&lt;｜tool▁call▁begin｜&gt;function&lt;｜tool▁sep｜&gt;NAME\n```json\nARGUMENTS\n```&lt;｜tool▁call▁end｜&gt;</c>,
/// further calls after a newline, then <c>&lt;｜tool▁calls▁end｜&gt;</c>; DeepSeek-V3.1:
/// <c>&lt;｜tool▁call▁begin｜&gt;NAME&lt;｜tool▁sep｜&gt;ARGUMENTS&lt;｜tool▁call▁end｜&gt;</c> chained directly. The markers are
/// the tokenizer's added tokens; each function's arguments follow its parameters schema.
/// </summary>
internal static class ToolCallGrammar
{
    /// <summary>Most calls in one turn.</summary>
    public const int MaxParallelCalls = 8;

    /// <summary>The grammar of one or more calls of <paramref name="tools"/> (one call unless <paramref name="parallel"/>).</summary>
    /// <exception cref="ArgumentException">A tool's parameters schema is unsupported (the message names the tool), or the tokenizer lacks the markers.</exception>
    /// <param name="tools">The functions.</param>
    /// <param name="parallel">Whether more than one call may follow.</param>
    /// <param name="tokenizer">Whose added tokens the markers are.</param>
    /// <param name="format">The chat template's call format.</param>
    /// <param name="strict">Whether every tool's schema must be enforceable (a forced call); otherwise a tool whose schema
    /// is not gets any JSON object as arguments.</param>
    public static GrammarNode Build(IReadOnlyList<ToolDefinition> tools, bool parallel, ITextTokenizer tokenizer, ChatFormat format, bool strict = true)
    {
        (LiteralNode opener, GrammarNode rest) = Calls(tools, parallel, tokenizer, format, strict);
        return new SequenceNode([opener, rest]);
    }

    /// <summary>
    /// Free text that may turn into tool calls: anything until the model writes the calls opener, then the calls'
    /// grammar (tool_choice auto). The model decides whether to call; once it does, its calls are well formed.
    /// </summary>
    /// <remarks>
    /// A tool whose parameters use schema keywords the grammar cannot enforce (<c>format</c>, <c>minimum</c>, ...) gets
    /// any JSON object as arguments here, as OpenAI's non-strict tools do; a forced call (<see cref="Build"/>) refuses it.
    /// </remarks>
    public static GrammarNode BuildAfterText(IReadOnlyList<ToolDefinition> tools, bool parallel, ITextTokenizer tokenizer, ChatFormat format)
    {
        (LiteralNode opener, GrammarNode rest) = Calls(tools, parallel, tokenizer, format, strict: false);
        return new TextThenNode(opener.Symbols[0], rest);
    }

    private static (LiteralNode Opener, GrammarNode AfterOpener) Calls(IReadOnlyList<ToolDefinition> tools, bool parallel, ITextTokenizer tokenizer, ChatFormat format, bool strict)
    {
        bool v31 = format == ChatFormat.DeepSeekV31;
        var functions = new List<GrammarNode>();
        foreach (ToolDefinition tool in tools)
        {
            GrammarNode arguments;
            try
            {
                arguments = tool.Parameters is { } schema ? JsonSchemaGrammar.Compile(schema) : JsonSchemaGrammar.AnyObject;
            }
            catch (JsonSchemaException) when (!strict)
            {
                arguments = JsonSchemaGrammar.AnyObject;
            }
            catch (JsonSchemaException e)
            {
                throw new ArgumentException($"Tool '{tool.Name}' has a parameters schema the grammar cannot enforce: {e.Message}", "Tools", e);
            }
            functions.Add(v31
                ? new SequenceNode([LiteralNode.Of(tool.Name), Marker(tokenizer, DeepSeekChatTemplate.ToolSep), arguments])
                : new SequenceNode([LiteralNode.Of(tool.Name + "\n```json\n"), arguments, LiteralNode.Of("\n```")]));
        }
        GrammarNode function = functions.Count == 1 ? functions[0] : new ChoiceNode(functions);
        GrammarNode call = new SequenceNode(v31
            ? [Marker(tokenizer, DeepSeekChatTemplate.ToolCallBegin), function, Marker(tokenizer, DeepSeekChatTemplate.ToolCallEnd)]
            : [Marker(tokenizer, DeepSeekChatTemplate.ToolCallBegin), LiteralNode.Of("function"), Marker(tokenizer, DeepSeekChatTemplate.ToolSep), function,
               Marker(tokenizer, DeepSeekChatTemplate.ToolCallEnd)]);
        var rest = new List<GrammarNode> { call };
        if (parallel)
            rest.Add(new RepeatNode(v31 ? call : new SequenceNode([LiteralNode.Of("\n"), call]), 0, MaxParallelCalls - 1));
        rest.Add(Marker(tokenizer, DeepSeekChatTemplate.ToolCallsEnd));
        return (Marker(tokenizer, DeepSeekChatTemplate.ToolCallsBegin), new SequenceNode(rest));
    }

    private static LiteralNode Marker(ITextTokenizer tokenizer, string text)
    {
        IReadOnlyList<int> ids = tokenizer.Encode(text);
        if (ids.Count != 1 || !tokenizer.IsAddedToken(ids[0]))
            throw new ArgumentException($"The tokenizer has no '{text}' token, so it cannot write tool calls.");
        return new LiteralNode([GrammarNode.SpecialSymbol(ids[0])]);
    }
}
