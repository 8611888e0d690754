namespace Ftransformers.Generation.Grammar;

/// <summary>Several nodes one after another (a tool call: its opener, name, arguments and closer).</summary>
internal sealed class SequenceNode(IReadOnlyList<GrammarNode> elements) : GrammarNode
{
    /// <summary>The elements, in order (never empty).</summary>
    public IReadOnlyList<GrammarNode> Elements { get; } = elements.Count > 0 ? elements : throw new ArgumentException("A sequence needs an element.", nameof(elements));

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into) => StartAt(0, below, symbol, into);

    private void StartAt(int index, GrammarStack? below, int symbol, List<GrammarStack?> into)
    {
        // The last element continues straight into what follows the sequence, so no finished frame stays behind.
        GrammarStack? next = index + 1 == Elements.Count ? below : new GrammarStack(new SequenceFrame(this, index + 1), below);
        Elements[index].Start(next, symbol, into);
    }

    private sealed record SequenceFrame(SequenceNode Node, int Index) : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into) => Node.StartAt(Index, below, symbol, into);
    }
}

/// <summary>A node repeated between <see cref="Min"/> and <see cref="Max"/> times (parallel tool calls).</summary>
internal sealed class RepeatNode(GrammarNode item, int min, int max) : GrammarNode
{
    /// <summary>The repeated node; it must not match the empty string.</summary>
    public GrammarNode Item { get; } = item;

    /// <summary>Fewest repetitions.</summary>
    public int Min { get; } = min;

    /// <summary>Most repetitions.</summary>
    public int Max { get; } = max;

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into) => new RepeatFrame(this, 0).Step(below, symbol, into);

    private sealed record RepeatFrame(RepeatNode Node, int Count) : GrammarFrame
    {
        public override bool CanEnd => Count >= Node.Min;

        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (Count < Node.Max)
                Node.Item.Start(new GrammarStack(this with { Count = Count + 1 }, below), symbol, into);
            if (Count >= Node.Min)
                GrammarStack.Step(below, symbol, into);
        }
    }
}
