namespace Ftransformers.Generation.Grammar;

/// <summary>
/// Checks a compiled grammar can be matched at all: no reference reaches itself before a symbol is read (that would
/// recurse without end), and some finite input matches it (required properties that recurse forever match nothing).
/// </summary>
internal static class GrammarChecks
{
    /// <summary>A reference that reaches itself without reading a symbol, or null when there is none.</summary>
    public static ReferenceNode? LeftRecursive(IEnumerable<ReferenceNode> references)
    {
        foreach (ReferenceNode reference in references)
        {
            var seen = new HashSet<GrammarNode>();
            var pending = new Stack<GrammarNode>(FirstPositions(reference));
            while (pending.TryPop(out GrammarNode? node))
            {
                if (ReferenceEquals(node, reference))
                    return reference;
                if (seen.Add(node))
                    foreach (GrammarNode next in FirstPositions(node))
                        pending.Push(next);
            }
        }
        return null;
    }

    /// <summary>Whether some finite input matches <paramref name="root"/>.</summary>
    public static bool Matchable(GrammarNode root)
    {
        List<GrammarNode> nodes = All(root);
        var matchable = new HashSet<GrammarNode>();
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (GrammarNode node in nodes)
                if (!matchable.Contains(node) && IsMatchable(node, matchable))
                    changed |= matchable.Add(node);
        }
        return matchable.Contains(root);
    }

    private static bool IsMatchable(GrammarNode node, HashSet<GrammarNode> matchable) => node switch
    {
        ChoiceNode choice => choice.Alternatives.Any(matchable.Contains),
        SequenceNode sequence => sequence.Elements.All(matchable.Contains),
        RepeatNode repeat => repeat.Min == 0 || matchable.Contains(repeat.Item),
        ReferenceNode reference => reference.Target != null && matchable.Contains(reference.Target),
        ArrayNode array => array.MinItems == 0 || matchable.Contains(array.Item),
        ObjectNode obj => obj.AnyValue != null || obj.Properties.Where(p => p.Required).All(p => matchable.Contains(p.Value)),
        _ => true,   // literals, strings, numbers, free text
    };

    // The nodes that may read the same first symbol as this one.
    private static IEnumerable<GrammarNode> FirstPositions(GrammarNode node) => node switch
    {
        ChoiceNode choice => choice.Alternatives,
        SequenceNode sequence => [sequence.Elements[0]],
        RepeatNode repeat => [repeat.Item],
        ReferenceNode { Target: { } target } => [target],
        _ => [],
    };

    private static List<GrammarNode> All(GrammarNode root)
    {
        var seen = new HashSet<GrammarNode>();
        var order = new List<GrammarNode>();
        var pending = new Stack<GrammarNode>([root]);
        while (pending.TryPop(out GrammarNode? node))
        {
            if (!seen.Add(node))
                continue;
            order.Add(node);
            IEnumerable<GrammarNode> children = node switch
            {
                ChoiceNode choice => choice.Alternatives,
                SequenceNode sequence => sequence.Elements,
                RepeatNode repeat => [repeat.Item],
                ReferenceNode { Target: { } target } => [target],
                ArrayNode array => [array.Item],
                ObjectNode obj => [.. obj.Properties.Select(p => p.Value), .. obj.AnyValue != null ? [obj.AnyValue] : Array.Empty<GrammarNode>()],
                TextThenNode text => [text.Then],
                _ => [],
            };
            foreach (GrammarNode child in children)
                pending.Push(child);
        }
        return order;
    }
}
