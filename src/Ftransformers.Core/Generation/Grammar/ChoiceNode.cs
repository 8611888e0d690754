namespace Ftransformers.Generation.Grammar;

/// <summary>Any one of several nodes (<c>anyOf</c>, <c>enum</c>, a list of types): each is tried and the wrong ones die.</summary>
internal sealed class ChoiceNode(IReadOnlyList<GrammarNode> alternatives) : GrammarNode
{
    /// <summary>The alternatives.</summary>
    public IReadOnlyList<GrammarNode> Alternatives { get; } = alternatives;

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into)
    {
        foreach (GrammarNode alternative in Alternatives)
            alternative.Start(below, symbol, into);
    }
}

/// <summary>A node defined later (a <c>$ref</c>, possibly to itself), resolved once the whole schema is compiled.</summary>
internal sealed class ReferenceNode(string name) : GrammarNode
{
    /// <summary>The reference as written.</summary>
    public string Name { get; } = name;

    /// <summary>The node referred to; set once compiling ends.</summary>
    public GrammarNode? Target { get; set; }

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into) =>
        (Target ?? throw new InvalidOperationException($"Reference '{Name}' was never resolved.")).Start(below, symbol, into);
}
