namespace Ftransformers.Generation.Grammar;

/// <summary>
/// One element of a grammar over symbols: bytes 0–255 of the output, and special tokens as
/// <see cref="SpecialSymbol"/>. A node is matched by frames on a stack; nodes are immutable and shared.
/// </summary>
internal abstract class GrammarNode
{
    /// <summary>The symbol that stands for special token <paramref name="tokenId"/> (never a byte).</summary>
    public static int SpecialSymbol(int tokenId) => 256 + tokenId;

    /// <summary>
    /// Begins matching this node with its first symbol; <paramref name="below"/> continues once the node is
    /// complete. Every stack the symbol leads to is added to <paramref name="into"/> (null: the whole grammar is done).
    /// </summary>
    public abstract void Start(GrammarStack? below, int symbol, List<GrammarStack?> into);
}

/// <summary>A node being matched: what it has seen so far. Immutable, compared by value (states are cached by it).</summary>
internal abstract record GrammarFrame
{
    /// <summary>Offers the next symbol to this frame, the top of a stack whose rest is <paramref name="below"/>.</summary>
    public abstract void Step(GrammarStack? below, int symbol, List<GrammarStack?> into);

    /// <summary>Whether the frame may end here without another symbol (a number may stop after any digit).</summary>
    public virtual bool CanEnd => false;

    /// <summary>
    /// Inside a string, between characters: how many more characters it may hold (<see cref="int.MaxValue"/>: no
    /// limit); -1 elsewhere. Lets a mask take whole runs of the vocabulary that are string content without walking them.
    /// </summary>
    public virtual int StringCharactersLeft => -1;

    /// <summary>Whether every byte keeps the frame as it is (free text), so every token is allowed without walking.</summary>
    public virtual bool TakesAnyBytes => false;
}

/// <summary>A persistent stack of frames: the innermost first. Null stands for "everything matched".</summary>
internal sealed record GrammarStack(GrammarFrame Top, GrammarStack? Below)
{
    /// <summary>Frames on the stack; a grammar that nests deeper than its limit is cut there.</summary>
    public int Depth { get; } = 1 + (Below?.Depth ?? 0);

    /// <summary>Offers <paramref name="symbol"/> to <paramref name="stack"/>; a finished grammar takes no symbol.</summary>
    public static void Step(GrammarStack? stack, int symbol, List<GrammarStack?> into) => stack?.Top.Step(stack.Below, symbol, into);

    /// <summary>Whether <paramref name="stack"/> may end here: every frame on it may.</summary>
    public static bool CanEnd(GrammarStack? stack)
    {
        for (; stack != null; stack = stack.Below)
            if (!stack.Top.CanEnd)
                return false;
        return true;
    }

    /// <summary>Pushes <paramref name="frame"/> and steps it with <paramref name="symbol"/>.</summary>
    public static void Push(GrammarFrame frame, GrammarStack? below, int symbol, List<GrammarStack?> into) => frame.Step(below, symbol, into);
}
