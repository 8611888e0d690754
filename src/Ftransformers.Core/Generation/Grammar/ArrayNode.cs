namespace Ftransformers.Generation.Grammar;

/// <summary>A JSON array of <see cref="MinItems"/> to <see cref="MaxItems"/> items of one kind, written compactly.</summary>
internal sealed class ArrayNode(GrammarNode item, int minItems, int maxItems) : GrammarNode
{
    /// <summary>What each item is.</summary>
    public GrammarNode Item { get; } = item;

    /// <summary>Fewest items.</summary>
    public int MinItems { get; } = minItems;

    /// <summary>Most items.</summary>
    public int MaxItems { get; } = maxItems;

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into)
    {
        if (symbol == '[')
            into.Add(new GrammarStack(new ArrayFrame(this, Phase.Opened, 0), below));
    }

    private enum Phase : byte { Opened, AfterItem, BeforeItem }

    private sealed record ArrayFrame(ArrayNode Node, Phase Phase, int Count) : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (symbol == ']' && Phase != Phase.BeforeItem)
            {
                if (Count >= Node.MinItems)
                    into.Add(below);
                return;
            }
            if (Phase == Phase.AfterItem)
            {
                if (symbol == ',' && Count < Node.MaxItems)
                    into.Add(new GrammarStack(this with { Phase = Phase.BeforeItem }, below));
                return;
            }
            if (Count < Node.MaxItems)
            {
                // Without a maximum, a count past the minimum changes nothing, so it stops there and the state repeats.
                int count = Node.MaxItems == int.MaxValue && Count >= Node.MinItems ? Count : Count + 1;
                Node.Item.Start(new GrammarStack(this with { Phase = Phase.AfterItem, Count = count }, below), symbol, into);
            }
        }
    }
}
