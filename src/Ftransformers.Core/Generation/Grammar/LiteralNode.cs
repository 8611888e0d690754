namespace Ftransformers.Generation.Grammar;

/// <summary>A fixed run of symbols: <c>true</c>, an enum value, an object key with its colon, a special token.</summary>
internal sealed class LiteralNode(int[] symbols) : GrammarNode
{
    /// <summary>The symbols, in order (never empty).</summary>
    public int[] Symbols { get; } = symbols.Length > 0 ? symbols : throw new ArgumentException("A literal needs at least one symbol.", nameof(symbols));

    /// <summary>The literal of a text's UTF-8 bytes.</summary>
    public static LiteralNode Of(string text) => new([.. System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b)]);

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into) => new LiteralFrame(Symbols, 0).Step(below, symbol, into);

    private sealed record LiteralFrame(int[] Symbols, int Position) : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (Symbols[Position] != symbol)
                return;
            into.Add(Position + 1 == Symbols.Length ? below : new GrammarStack(this with { Position = Position + 1 }, below));
        }
    }
}
