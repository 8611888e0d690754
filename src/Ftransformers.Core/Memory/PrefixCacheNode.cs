namespace Ftransformers.Memory;

/// <summary>
/// One edge of the prefix tree: a run of token ids at positions <see cref="Start"/>..<see cref="End"/>-1 and the KV
/// pages that hold them. <see cref="Pages"/> lists the pages of logical page indexes <c>Start / pageSize</c> through
/// <c>(End - 1) / pageSize</c>; the first may also hold positions before <see cref="Start"/> (valid for this path,
/// since the sequence that inserted the node computed them) and the last may hold positions past <see cref="End"/>
/// (not valid here: a sequence that reuses a partial page copies the valid part).
/// </summary>
internal sealed class PrefixCacheNode
{
    /// <summary>Token ids of this edge.</summary>
    public int[] Key { get; set; } = [];

    /// <summary>Position of <c>Key[0]</c> in the sequence.</summary>
    public int Start { get; set; }

    /// <summary>Position after the last token of this edge.</summary>
    public int End => Start + Key.Length;

    /// <summary>Physical pages of the logical pages this edge touches (one reference each held by the node).</summary>
    public int[] Pages { get; set; } = [];

    /// <summary>The node above; null for the root.</summary>
    public PrefixCacheNode? Parent { get; set; }

    /// <summary>Children by their first token id.</summary>
    public Dictionary<int, PrefixCacheNode> Children { get; } = [];

    /// <summary>Running sequences whose reused prefix passes through this node; a locked node is never evicted.</summary>
    public int LockCount { get; set; }

    /// <summary>Logical time of the last match or insert through this node (LRU order).</summary>
    public long LastAccess { get; set; }

    /// <summary>Whether nothing hangs below this node.</summary>
    public bool IsLeaf => Children.Count == 0;
}
