namespace Ftransformers.Memory;

/// <summary>
/// The page bookkeeping of the MLA latent cache of every running sequence and cached prefix: fixed-size pages handed
/// out from a free list. A page holds <see cref="PageSize"/> consecutive positions of one sequence in every layer; token
/// slot <c>page * PageSize + offset</c> addresses its row in the store the attention backend keeps
/// (<see cref="ILatentStore"/>, sized <see cref="CapacityTokens"/>). Pages are reference counted: a sequence's page
/// table and each prefix-cache node that covers a page hold one reference each, and a page returns to the free list at
/// zero. Owned by the engine loop thread; the counters may be read from any thread.
/// </summary>
internal sealed class KvCachePool
{
    private readonly int[] _references;
    private readonly int[] _free;
    private int _freeCount;

    /// <summary>Creates a pool of <paramref name="pageCount"/> pages of <paramref name="pageSize"/> positions.</summary>
    public KvCachePool(int pageSize, int pageCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageCount, 1);
        PageSize = pageSize;
        PageCount = pageCount;
        _references = new int[pageCount];
        _free = new int[pageCount];
        for (int i = 0; i < pageCount; i++)
            _free[i] = pageCount - 1 - i;
        _freeCount = pageCount;
    }

    /// <summary>Positions per page.</summary>
    public int PageSize { get; }

    /// <summary>Pages in the pool.</summary>
    public int PageCount { get; }

    /// <summary>Token slots in all (pages times page size): the size of the store the pages address.</summary>
    public long CapacityTokens => (long)PageCount * PageSize;

    /// <summary>Pages on the free list.</summary>
    public int FreePages => Volatile.Read(ref _freeCount);

    /// <summary>Pages referenced by sequences or the prefix cache.</summary>
    public int UsedPages => PageCount - FreePages;

    /// <summary>Pages needed to hold positions 0..<paramref name="tokens"/>-1.</summary>
    public int PagesFor(int tokens) => (tokens + PageSize - 1) / PageSize;

    /// <summary>Takes a page off the free list with one reference.</summary>
    /// <exception cref="InvalidOperationException">No page is free (callers check <see cref="FreePages"/> first).</exception>
    public int Allocate()
    {
        if (_freeCount == 0)
            throw new InvalidOperationException("The KV cache pool has no free page.");
        int page = _free[--_freeCount];
        _references[page] = 1;
        return page;
    }

    /// <summary>Adds a reference to a page in use.</summary>
    public void Retain(int page)
    {
        if (_references[page] <= 0)
            throw new InvalidOperationException($"KV page {page} is free; only a page in use can be shared.");
        _references[page]++;
    }

    /// <summary>Drops a reference; the page returns to the free list when none remain.</summary>
    public void Release(int page)
    {
        if (_references[page] <= 0)
            throw new InvalidOperationException($"KV page {page} is released more often than it was referenced.");
        if (--_references[page] == 0)
            _free[_freeCount++] = page;
    }

    /// <summary>References held on a page (0 when free).</summary>
    public int References(int page) => _references[page];

    /// <summary>Bytes one token takes in a store of <paramref name="layers"/> layers of <paramref name="rowWidth"/> values.</summary>
    public static long BytesPerToken(int layers, int rowWidth, KvCacheDType dtype) =>
        (long)layers * rowWidth * (dtype == KvCacheDType.F32 ? sizeof(float) : sizeof(ushort));
}
