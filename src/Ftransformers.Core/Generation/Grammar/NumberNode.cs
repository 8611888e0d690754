namespace Ftransformers.Generation.Grammar;

/// <summary>
/// A JSON number, or an integer (no fraction, no exponent). Digits are capped so that every number the grammar
/// allows reads back exactly as a double (15 significant digits, two exponent digits): a model cannot run on
/// writing digits forever.
/// </summary>
internal sealed class NumberNode(bool integer) : GrammarNode
{
    /// <summary>Most digits before the point, and after it.</summary>
    public const int MaxDigits = 15;

    /// <summary>Most exponent digits.</summary>
    public const int MaxExponentDigits = 2;

    /// <summary>Any number.</summary>
    public static NumberNode Number { get; } = new(false);

    /// <summary>Any integer.</summary>
    public static NumberNode Integer { get; } = new(true);

    /// <summary>Whether only integers are allowed.</summary>
    public bool IsInteger { get; } = integer;

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into) => new NumberFrame(this, Phase.Start, 0).Step(below, symbol, into);

    private enum Phase : byte { Start, Minus, Zero, Whole, Point, Fraction, E, ExponentSign, Exponent }

    private sealed record NumberFrame(NumberNode Node, Phase Phase, int Digits) : GrammarFrame
    {
        public override bool CanEnd => Phase is Phase.Zero or Phase.Whole or Phase.Fraction or Phase.Exponent;

        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            bool digit = symbol is >= '0' and <= '9';
            NumberFrame? next = Phase switch
            {
                Phase.Start when symbol == '-' => this with { Phase = Phase.Minus },
                Phase.Start or Phase.Minus when symbol == '0' => this with { Phase = Phase.Zero, Digits = 1 },
                Phase.Start or Phase.Minus when digit => this with { Phase = Phase.Whole, Digits = 1 },
                Phase.Whole when digit && Digits < MaxDigits => this with { Digits = Digits + 1 },
                Phase.Zero or Phase.Whole when symbol == '.' && !Node.IsInteger => this with { Phase = Phase.Point, Digits = 0 },
                Phase.Zero or Phase.Whole or Phase.Fraction when symbol is 'e' or 'E' && !Node.IsInteger => this with { Phase = Phase.E, Digits = 0 },
                Phase.Point when digit => this with { Phase = Phase.Fraction, Digits = 1 },
                Phase.Fraction when digit && Digits < MaxDigits => this with { Digits = Digits + 1 },
                Phase.E when symbol is '+' or '-' => this with { Phase = Phase.ExponentSign },
                Phase.E or Phase.ExponentSign when digit => this with { Phase = Phase.Exponent, Digits = 1 },
                Phase.Exponent when digit && Digits < MaxExponentDigits => this with { Digits = Digits + 1 },
                _ => null,
            };
            if (next != null)
                into.Add(new GrammarStack(next, below));
            // A number ends where something else begins: that symbol belongs to what follows.
            if (CanEnd)
                GrammarStack.Step(below, symbol, into);
        }
    }
}
