namespace Ftransformers.Generation.Grammar;

/// <summary>
/// Free text (any bytes, any marker) that may end at any point, until <see cref="Trigger"/> appears; from there the
/// output follows <see cref="Then"/>. Lets a model choose freely whether to call tools, and keeps the calls valid.
/// </summary>
internal sealed class TextThenNode(int trigger, GrammarNode then) : GrammarNode
{
    /// <summary>The symbol that ends the free text.</summary>
    public int Trigger { get; } = trigger;

    /// <summary>What follows the trigger.</summary>
    public GrammarNode Then { get; } = then;

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into) => new TextFrame(this).Step(below, symbol, into);

    private sealed record TextFrame(TextThenNode Node) : GrammarFrame
    {
        public override bool CanEnd => true;

        public override bool TakesAnyBytes => true;

        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (symbol == Node.Trigger)
                into.Add(new GrammarStack(new ThenFrame(Node), below));
            else
                into.Add(new GrammarStack(this, below));
        }
    }

    // Right after the trigger: the next symbol begins Then.
    private sealed record ThenFrame(TextThenNode Node) : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into) => Node.Then.Start(below, symbol, into);
    }
}
