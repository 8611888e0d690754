namespace Ftransformers.Generation.Grammar;

/// <summary>
/// A JSON string of <see cref="MinLength"/> to <see cref="MaxLength"/> characters (code points, as JSON Schema counts
/// them). Its bytes are well-formed UTF-8, so a token may end in the middle of a character and the next one finish
/// it. <c>\u</c> escapes of surrogates (<c>\ud800</c>-<c>\udfff</c>) are not produced: a lone surrogate is valid JSON
/// that no .NET string holds.
/// </summary>
internal sealed class StringNode(int minLength, int maxLength) : GrammarNode
{
    /// <summary>Any string.</summary>
    public static StringNode Any { get; } = new(0, int.MaxValue);

    /// <summary>Fewest characters.</summary>
    public int MinLength { get; } = minLength;

    /// <summary>Most characters.</summary>
    public int MaxLength { get; } = maxLength;

    public override void Start(GrammarStack? below, int symbol, List<GrammarStack?> into)
    {
        if (symbol == '"')
            into.Add(new GrammarStack(new StringFrame(this, Phase.Body, 0, 0, 0, 0), below));
    }

    private enum Phase : byte { Body, Escape, Hex }

    // Length counts characters begun; Pending the continuation bytes still due in the current one (or hex digits
    // after \u); Low..High the range of the next continuation byte (UTF-8 forbids overlong forms and surrogates).
    private sealed record StringFrame(StringNode Node, Phase Phase, int Length, int Pending, byte Low, byte High) : GrammarFrame
    {
        public override int StringCharactersLeft => Phase == Phase.Body && Pending == 0 ? Node.MaxLength - Length : -1;

        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (symbol > 0xFF)
                return;
            GrammarFrame? next = Phase switch
            {
                Phase.Escape => symbol switch
                {
                    '"' or '\\' or '/' or 'b' or 'f' or 'n' or 'r' or 't' => this with { Phase = Phase.Body },
                    'u' => this with { Phase = Phase.Hex, Pending = 4 },
                    _ => null,
                },
                // After \u, a first digit d allows only d0-d7 next: d8-df are surrogates (Low marks that case).
                Phase.Hex => IsHex(symbol) && !(Pending == 3 && Low == 1 && symbol is >= '8' and <= '9' or >= 'a' and <= 'f' or >= 'A' and <= 'F')
                    ? this with { Phase = Pending == 1 ? Phase.Body : Phase.Hex, Pending = Pending - 1, Low = (byte)(Pending == 4 && symbol is 'd' or 'D' ? 1 : 0) }
                    : null,
                // The range is cleared once the character is complete, so states between characters compare equal.
                _ when Pending > 0 => symbol >= Low && symbol <= High
                    ? this with { Pending = Pending - 1, Low = (byte)(Pending == 1 ? 0 : 0x80), High = (byte)(Pending == 1 ? 0 : 0xBF) }
                    : null,
                _ => Body(below, symbol, into),
            };
            if (next != null)
                into.Add(new GrammarStack(next, below));
        }

        private GrammarFrame? Body(GrammarStack? below, int symbol, List<GrammarStack?> into)
        {
            if (symbol == '"')
            {
                if (Length >= Node.MinLength)
                    into.Add(below);
                return null;
            }
            if (symbol < 0x20 || Length >= Node.MaxLength)
                return null;
            // Without a maximum, a count past the minimum changes nothing, so it stops there and the state repeats.
            StringFrame counted = Node.MaxLength == int.MaxValue && Length >= Node.MinLength ? this : this with { Length = Length + 1 };
            return symbol switch
            {
                '\\' => counted with { Phase = Phase.Escape },
                < 0x80 => counted,
                >= 0xC2 and <= 0xDF => counted with { Pending = 1, Low = 0x80, High = 0xBF },
                0xE0 => counted with { Pending = 2, Low = 0xA0, High = 0xBF },
                0xED => counted with { Pending = 2, Low = 0x80, High = 0x9F },
                >= 0xE1 and <= 0xEF => counted with { Pending = 2, Low = 0x80, High = 0xBF },
                0xF0 => counted with { Pending = 3, Low = 0x90, High = 0xBF },
                >= 0xF1 and <= 0xF3 => counted with { Pending = 3, Low = 0x80, High = 0xBF },
                0xF4 => counted with { Pending = 3, Low = 0x80, High = 0x8F },
                _ => null,
            };
        }

        private static bool IsHex(int symbol) => symbol is >= '0' and <= '9' or >= 'a' and <= 'f' or >= 'A' and <= 'F';
    }
}
