namespace Ftransformers.Generation.Grammar;

/// <summary>
/// Where a grammar is after some symbols: every stack still alive (a choice keeps several until a symbol tells them
/// apart). Immutable and compared by value, so a state can key a cache of token masks.
/// </summary>
internal sealed class GrammarState : IEquatable<GrammarState>
{
    /// <summary>Deepest nesting allowed; a recursive schema is cut there, so a model cannot nest without end.</summary>
    public const int MaxDepth = 64;

    /// <summary>Most alternatives open at once; branches of a schema that stay alike byte after byte multiply them.</summary>
    public const int MaxStacks = 64;

    private readonly GrammarStack?[] _stacks;
    private readonly int _hash;

    private GrammarState(GrammarStack?[] stacks)
    {
        _stacks = stacks;
        foreach (GrammarStack? stack in stacks)
            _hash ^= stack?.GetHashCode() ?? 0x5bd1e995;   // order-free: states are sets of stacks
    }

    /// <summary>The state before the first symbol of <paramref name="root"/>.</summary>
    public static GrammarState Initial(GrammarNode root) => new([new GrammarStack(new StartFrame(root), null)]);

    /// <summary>The top frame when the state is a single stack (the common case between choices), else null.</summary>
    public GrammarFrame? SingleTop => _stacks.Length == 1 ? _stacks[0]?.Top : null;

    /// <summary>Whether the input may end here.</summary>
    public bool CanEnd => _stacks.Any(GrammarStack.CanEnd);

    /// <summary>The state after <paramref name="symbol"/>, or null when the grammar does not allow it here.</summary>
    /// <param name="symbol">A byte, or a special token's symbol.</param>
    /// <param name="scratch">A list to work in (cleared here), so that walking many tokens allocates less.</param>
    public GrammarState? Advance(int symbol, List<GrammarStack?> scratch)
    {
        scratch.Clear();
        foreach (GrammarStack? stack in _stacks)
            GrammarStack.Step(stack, symbol, scratch);
        int count = 0;
        for (int i = 0; i < scratch.Count; i++)
        {
            GrammarStack? stack = scratch[i];
            if (stack?.Depth > MaxDepth || Contains(scratch, count, stack))
                continue;
            scratch[count++] = stack;
        }
        if (count > MaxStacks)
            throw new InvalidOperationException($"The schema keeps more than {MaxStacks} alternatives open at once (anyOf branches that stay alike); make its branches differ early.");
        return count == 0 ? null : new GrammarState([.. scratch.GetRange(0, count)]);
    }

    /// <summary>The state after every byte of <paramref name="bytes"/>, or null.</summary>
    public GrammarState? Advance(ReadOnlySpan<byte> bytes, List<GrammarStack?> scratch)
    {
        GrammarState? state = this;
        foreach (byte b in bytes)
            if ((state = state.Advance(b, scratch)) == null)
                return null;
        return state;
    }

    private static bool Contains(List<GrammarStack?> stacks, int count, GrammarStack? stack)
    {
        for (int i = 0; i < count; i++)
            if (Equals(stacks[i], stack))
                return true;
        return false;
    }

    public bool Equals(GrammarState? other) =>
        other != null && other._hash == _hash && other._stacks.Length == _stacks.Length && _stacks.All(s => other._stacks.Contains(s));

    public override bool Equals(object? obj) => Equals(obj as GrammarState);

    public override int GetHashCode() => _hash;

    // Before the first symbol: the root node has not started.
    private sealed record StartFrame(GrammarNode Root) : GrammarFrame
    {
        public override void Step(GrammarStack? below, int symbol, List<GrammarStack?> into) => Root.Start(below, symbol, into);
    }
}
