namespace Ftransformers.Generation.Grammar;

/// <summary>A property an object may hold: its key and colon as written, its value, whether it must appear.</summary>
internal sealed record ObjectProperty(string Name, LiteralNode Key, GrammarNode Value, bool Required);

/// <summary>
/// A JSON object, written compactly. With declared properties, they appear in the order declared (optional ones may
/// be left out), as OpenAI's structured outputs write them; without, any string keys map to <see cref="AnyValue"/>.
/// </summary>
internal sealed class ObjectNode : GrammarNode
{
    /// <summary>An object of the given properties.</summary>
    public ObjectNode(IReadOnlyList<ObjectProperty> properties)
    {
        Properties = properties;
        // Closing is allowed from index i on when no required property is left at or after i.
        CanCloseFrom = new bool[properties.Count + 1];
        CanCloseFrom[properties.Count] = true;
        for (int i = properties.Count - 1; i >= 0; i--)
            CanCloseFrom[i] = CanCloseFrom[i + 1] && !properties[i].Required;
    }

    /// <summary>An object with any keys, each mapping to <paramref name="anyValue"/>.</summary>
    public ObjectNode(GrammarNode anyValue) : this([]) => AnyValue = anyValue;

    /// <summary>The declared properties, in the order they are written.</summary>
    public IReadOnlyList<ObjectProperty> Properties { get; }

    /// <summary>The value of any key, for objects without declared properties; null when only declared keys may appear.</summary>
    public GrammarNode? AnyValue { get; }

    private bool[] CanCloseFrom { get; }

    private static readonly LiteralNode Colon = LiteralNode.Of(":");

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into)
    {
        if (symbol == '{')
            into.Add(new GrammarStack(new ObjectFrame(this, Phase.Opened, 0), below));
    }

    private enum Phase : byte { Opened, AfterMember, BeforeKey, Value }

    // Next: the first declared property that may still be written (in Phase.Value: the one whose value is due).
    private sealed record ObjectFrame(ObjectNode Node, Phase Phase, int Next) : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            switch (Phase)
            {
                case Phase.Opened or Phase.AfterMember when symbol == '}':
                    if (Node.AnyValue != null || Node.CanCloseFrom[Next])
                        into.Add(below);
                    break;
                case Phase.AfterMember when symbol == ',':
                    if (Node.AnyValue != null || Next < Node.Properties.Count)
                        into.Add(new GrammarStack(this with { Phase = Phase.BeforeKey }, below));
                    break;
                case Phase.Opened or Phase.BeforeKey:
                    StartKey(below, symbol, into);
                    break;
                case Phase.Value:
                    // The key and colon are written; the value begins with this symbol.
                    // Free keys leave nothing to count, so the state repeats from member to member.
                    var after = new GrammarStack(this with { Phase = Phase.AfterMember, Next = Node.AnyValue != null ? 0 : Next + 1 }, below);
                    (Node.AnyValue ?? Node.Properties[Next].Value).Start(after, symbol, into);
                    break;
            }
        }

        private void StartKey(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (Node.AnyValue != null)
            {
                var colon = new GrammarStack(new KeyColonFrame(), new GrammarStack(this with { Phase = Phase.Value }, below));
                StringNode.Any.Start(colon, symbol, into);
                return;
            }
            // Each property from Next up to the first required one may come next; the wrong keys die on later bytes.
            for (int j = Next; j < Node.Properties.Count; j++)
            {
                Node.Properties[j].Key.Start(new GrammarStack(this with { Phase = Phase.Value, Next = j }, below), symbol, into);
                if (Node.Properties[j].Required)
                    break;
            }
        }
    }

    private sealed record KeyColonFrame : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into) => Colon.Start(below, symbol, into);
    }
}
