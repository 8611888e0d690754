namespace Ftransformers.Memory;

/// <summary>What a lookup found: the longest cached prefix and the pages that hold it.</summary>
/// <param name="Length">Tokens of the prefix whose KV is cached.</param>
/// <param name="Node">The deepest node the prefix reaches (lock it while the KV is in use); the root when nothing matched.</param>
/// <param name="Pages">Physical pages of logical pages 0..ceil(Length / pageSize)-1; the last one is partial when Length is not page-aligned.</param>
internal readonly record struct PrefixMatch(int Length, PrefixCacheNode Node, int[] Pages);

/// <summary>
/// A radix tree from token ids to cached KV pages (the shape of SGLang's RadixCache): <see cref="Match"/> finds the
/// longest cached prefix at token granularity, <see cref="Insert"/> adds a sequence's tokens and pages (its prompt
/// after each prefill chunk, everything it computed when it finishes),
/// <see cref="Lock"/>/<see cref="Unlock"/> pin the path a running sequence reuses, and <see cref="Evict"/> frees
/// the least recently used unlocked leaves. Owned by the engine loop thread.
/// </summary>
internal sealed class PrefixCache
{
    private readonly KvCachePool _pool;
    private readonly PrefixCacheNode _root = new();
    private long _clock;

    /// <summary>Creates an empty cache over a pool.</summary>
    public PrefixCache(KvCachePool pool) => _pool = pool;

    /// <summary>Lookups recorded by admissions.</summary>
    public long Lookups { get; private set; }

    /// <summary>Tokens whose KV came from the cache instead of being computed.</summary>
    public long HitTokens { get; private set; }

    /// <summary>Tokens dropped by eviction.</summary>
    public long EvictedTokens { get; private set; }

    /// <summary>Tokens held by the tree.</summary>
    public long CachedTokens { get; private set; }

    /// <summary>The longest cached prefix of <paramref name="tokens"/>; marks the path as recently used.</summary>
    public PrefixMatch Match(ReadOnlySpan<int> tokens)
    {
        long now = ++_clock;
        PrefixCacheNode node = _root;
        int length = 0;
        var path = new List<PrefixCacheNode>();
        while (length < tokens.Length && node.Children.TryGetValue(tokens[length], out PrefixCacheNode? child))
        {
            int common = CommonLength(child.Key, tokens[length..]);
            child.LastAccess = now;
            path.Add(child);
            length += common;
            node = child;
            if (common < child.Key.Length)
                break;
        }

        // A logical page straddling two nodes is taken from the deeper one: its start holds the same tokens.
        int pageSize = _pool.PageSize;
        var pages = new int[_pool.PagesFor(length)];
        foreach (PrefixCacheNode n in path)
        {
            int first = n.Start / pageSize, last = (Math.Min(n.End, length) - 1) / pageSize;
            for (int k = first; k <= last; k++)
                pages[k] = n.Pages[k - first];
        }
        return new PrefixMatch(length, node, pages);
    }

    /// <summary>Counts an admission's lookup and the prompt tokens it reused.</summary>
    public void RecordLookup(int hitTokens)
    {
        Lookups++;
        HitTokens += hitTokens;
    }

    /// <summary>Pins a node and its ancestors against eviction.</summary>
    public void Lock(PrefixCacheNode node)
    {
        for (PrefixCacheNode? n = node; n != null && n != _root; n = n.Parent)
            n.LockCount++;
    }

    /// <summary>Releases a pin taken by <see cref="Lock"/>.</summary>
    public void Unlock(PrefixCacheNode node)
    {
        for (PrefixCacheNode? n = node; n != null && n != _root; n = n.Parent)
        {
            if (n.LockCount <= 0)
                throw new InvalidOperationException("A prefix-cache node is unlocked more often than it was locked.");
            n.LockCount--;
        }
    }

    /// <summary>
    /// Adds <paramref name="tokens"/> whose KV sits in <paramref name="pageTable"/> (logical page k at
    /// <c>pageTable[k]</c>). Tokens already cached keep their pages; the new suffix takes a reference on the pages it
    /// covers, so the caller may release its own references afterwards.
    /// </summary>
    /// <returns>The deepest node the tokens reach (the one to lock to keep them cached), as <see cref="Match"/> would find it.</returns>
    public PrefixCacheNode Insert(ReadOnlySpan<int> tokens, IReadOnlyList<int> pageTable)
    {
        if (_pool.PagesFor(tokens.Length) > pageTable.Count)
            throw new ArgumentException($"{tokens.Length} tokens need {_pool.PagesFor(tokens.Length)} pages; the table has {pageTable.Count}.", nameof(pageTable));
        long now = ++_clock;
        PrefixCacheNode node = _root;
        int length = 0;
        while (length < tokens.Length && node.Children.TryGetValue(tokens[length], out PrefixCacheNode? child))
        {
            int common = CommonLength(child.Key, tokens[length..]);
            child.LastAccess = now;
            if (common < child.Key.Length)
            {
                if (length + common == tokens.Length)
                    return child;
                child = Split(child, common);
            }
            length += common;
            node = child;
        }
        if (length == tokens.Length)
            return node;

        int pageSize = _pool.PageSize, first = length / pageSize, last = (tokens.Length - 1) / pageSize;
        var pages = new int[last - first + 1];
        for (int k = first; k <= last; k++)
        {
            pages[k - first] = pageTable[k];
            _pool.Retain(pageTable[k]);
        }
        var leaf = new PrefixCacheNode { Key = tokens[length..].ToArray(), Start = length, Pages = pages, Parent = node, LastAccess = now };
        node.Children.Add(leaf.Key[0], leaf);
        CachedTokens += leaf.Key.Length;
        return leaf;
    }

    /// <summary>
    /// Frees at least <paramref name="pages"/> pages if it can, dropping unlocked leaves least recently used first
    /// (a parent becomes a candidate once its last child is gone).
    /// </summary>
    /// <returns>Pages returned to the pool.</returns>
    public int Evict(int pages)
    {
        if (pages <= 0)
            return 0;
        var candidates = new PriorityQueue<PrefixCacheNode, long>();
        var stack = new Stack<PrefixCacheNode>();
        stack.Push(_root);
        while (stack.Count > 0)
        {
            PrefixCacheNode n = stack.Pop();
            foreach (PrefixCacheNode child in n.Children.Values)
                stack.Push(child);
            if (n != _root && n.IsLeaf && n.LockCount == 0)
                candidates.Enqueue(n, n.LastAccess);
        }

        int freeBefore = _pool.FreePages;
        while (_pool.FreePages - freeBefore < pages && candidates.TryDequeue(out PrefixCacheNode? leaf, out _))
        {
            PrefixCacheNode parent = leaf.Parent!;
            parent.Children.Remove(leaf.Key[0]);
            foreach (int page in leaf.Pages)
                _pool.Release(page);
            EvictedTokens += leaf.Key.Length;
            CachedTokens -= leaf.Key.Length;
            if (parent != _root && parent.IsLeaf && parent.LockCount == 0)
                candidates.Enqueue(parent, parent.LastAccess);
        }
        return _pool.FreePages - freeBefore;
    }

    /// <summary>Every page reference the tree holds (a page appears once per node that covers it).</summary>
    public IEnumerable<int> PageReferences()
    {
        var stack = new Stack<PrefixCacheNode>();
        stack.Push(_root);
        while (stack.Count > 0)
        {
            PrefixCacheNode n = stack.Pop();
            foreach (int page in n.Pages)
                yield return page;
            foreach (PrefixCacheNode child in n.Children.Values)
                stack.Push(child);
        }
    }

    /// <summary>Nodes below the root that are locked (0 when no sequence runs).</summary>
    public int LockedNodes()
    {
        int locked = 0;
        var stack = new Stack<PrefixCacheNode>();
        stack.Push(_root);
        while (stack.Count > 0)
        {
            PrefixCacheNode n = stack.Pop();
            if (n.LockCount > 0)
                locked++;
            foreach (PrefixCacheNode child in n.Children.Values)
                stack.Push(child);
        }
        return locked;
    }

    // Cuts `node` after `length` tokens: a new node takes the first part (and the node's locks, which pass through it)
    // and becomes the parent of the rest. A page the cut falls inside is then covered, and referenced, by both.
    private PrefixCacheNode Split(PrefixCacheNode node, int length)
    {
        int pageSize = _pool.PageSize;
        int firstPage = node.Start / pageSize;
        int upperPages = (node.Start + length - 1) / pageSize - firstPage + 1;
        int dropped = (node.Start + length) / pageSize - firstPage;
        var upper = new PrefixCacheNode
        {
            Key = node.Key[..length],
            Start = node.Start,
            Pages = node.Pages[..upperPages],
            Parent = node.Parent,
            LockCount = node.LockCount,
            LastAccess = node.LastAccess,
        };
        foreach (int page in upper.Pages)
            _pool.Retain(page);
        foreach (int page in node.Pages[..dropped])
            _pool.Release(page);
        node.Parent!.Children[upper.Key[0]] = upper;
        node.Key = node.Key[length..];
        node.Start += length;
        node.Pages = node.Pages[dropped..];
        node.Parent = upper;
        upper.Children.Add(node.Key[0], node);
        return upper;
    }

    private static int CommonLength(ReadOnlySpan<int> a, ReadOnlySpan<int> b) => a.CommonPrefixLength(b);
}
