using Ftransformers.Memory;
using NUnit.Framework;

namespace Ftransformers.Tests.Memory;

[TestFixture]
public class PrefixCacheTests
{
    private const int PageSize = 4;
    private KvCachePool _pool = null!;
    private PrefixCache _cache = null!;

    [SetUp]
    public void Create()
    {
        _pool = new KvCachePool(PageSize, pageCount: 64);
        _cache = new PrefixCache(_pool);
    }

    // As a finishing sequence does: its own pages for every token, inserted, then its references dropped.
    private int[] InsertFresh(int[] tokens, int[]? sharedPages = null)
    {
        var table = new List<int>();
        foreach (int page in sharedPages ?? [])
        {
            _pool.Retain(page);
            table.Add(page);
        }
        while (table.Count < _pool.PagesFor(tokens.Length))
            table.Add(_pool.Allocate());
        _cache.Insert(tokens, table);
        foreach (int page in table)
            _pool.Release(page);
        return [.. table];
    }

    private static int[] Range(int from, int count) => Enumerable.Range(from, count).ToArray();

    private void AssertReferencesConsistent()
    {
        var held = _cache.PageReferences().GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count());
        for (int page = 0; page < _pool.PageCount; page++)
            Assert.That(_pool.References(page), Is.EqualTo(held.GetValueOrDefault(page)), $"page {page}");
        Assert.That(_pool.FreePages, Is.EqualTo(_pool.PageCount - held.Count));
    }

    // A running sequence locks what Insert returns: it must be the node Match finds for the same tokens.
    [Test]
    public void Insert_ReturnsTheNodeMatchFinds_NewSuffix_CachedPrefix_OrInsideANode()
    {
        var table = new List<int> { _pool.Allocate(), _pool.Allocate(), _pool.Allocate() };
        int[] tokens = Range(1, 10);
        Assert.That(_cache.Insert(tokens, table), Is.SameAs(_cache.Match(tokens).Node), "new suffix");
        Assert.That(_cache.Insert(tokens, table), Is.SameAs(_cache.Match(tokens).Node), "already cached");
        Assert.That(_cache.Insert(tokens[..6], table), Is.SameAs(_cache.Match(tokens[..6]).Node), "ending inside a node");
        foreach (int page in table)
            _pool.Release(page);
        AssertReferencesConsistent();
    }

    [Test]
    public void Match_FindsTheLongestCachedPrefix_AtTokenGranularity()
    {
        int[] table = InsertFresh(Range(1, 10));
        PrefixMatch partial = _cache.Match([1, 2, 3, 4, 5, 6, 7, 99]);
        Assert.That(partial.Length, Is.EqualTo(7));
        Assert.That(partial.Pages, Is.EqualTo(table[..2]));
        Assert.That(_cache.Match([.. Range(1, 10), 11]).Length, Is.EqualTo(10));
        Assert.That(_cache.Match([5, 6]).Length, Is.Zero);
        Assert.That(_cache.Match([1]).Pages, Is.EqualTo(table[..1]));
        AssertReferencesConsistent();
    }

    [Test]
    public void Insert_SplitsAtTheFirstDifference_AndEachPathKeepsItsOwnPages()
    {
        int[] a = InsertFresh(Range(1, 10));
        // B reused A's first page and 2 tokens of the second (copied into its own page), then went its own way.
        int[] bTokens = [1, 2, 3, 4, 5, 6, 50, 51, 52];
        int[] b = InsertFresh(bTokens, sharedPages: a[..1]);

        PrefixMatch matchB = _cache.Match(bTokens);
        Assert.That(matchB.Length, Is.EqualTo(9));
        Assert.That(matchB.Pages, Is.EqualTo(new[] { a[0], b[1], b[2] }), "the page the cut falls in comes from the deeper node");
        PrefixMatch matchA = _cache.Match(Range(1, 10));
        Assert.That(matchA.Pages, Is.EqualTo(a));
        Assert.That(_cache.CachedTokens, Is.EqualTo(10 + 3));
        AssertReferencesConsistent();
    }

    [Test]
    public void Insert_OfAPrefixAlreadyCached_AddsNothing()
    {
        InsertFresh(Range(1, 10));
        int free = _pool.FreePages;
        InsertFresh(Range(1, 6));
        Assert.That(_pool.FreePages, Is.EqualTo(free));
        Assert.That(_cache.CachedTokens, Is.EqualTo(10));
        AssertReferencesConsistent();
    }

    [Test]
    public void Evict_DropsTheLeastRecentlyUsedUnlockedLeavesFirst()
    {
        InsertFresh(Range(100, 8));
        InsertFresh(Range(200, 8));
        InsertFresh(Range(300, 8));
        _cache.Match(Range(100, 8)); // 100.. is now the most recently used

        Assert.That(_cache.Evict(2), Is.EqualTo(2));
        Assert.That(_cache.Match(Range(200, 8)).Length, Is.Zero, "oldest goes first");
        Assert.That(_cache.Match(Range(300, 8)).Length, Is.EqualTo(8));
        Assert.That(_cache.Match(Range(100, 8)).Length, Is.EqualTo(8));

        _cache.Match(Range(300, 8));
        _cache.Evict(1);
        Assert.That(_cache.Match(Range(100, 8)).Length, Is.Zero);
        Assert.That(_cache.Match(Range(300, 8)).Length, Is.EqualTo(8));
        Assert.That(_cache.EvictedTokens, Is.EqualTo(16));
        AssertReferencesConsistent();
    }

    [Test]
    public void LockedPrefixes_SurviveEviction_UntilUnlocked()
    {
        InsertFresh(Range(1, 12));
        InsertFresh(Range(50, 8));
        PrefixMatch match = _cache.Match(Range(1, 6));
        _cache.Lock(match.Node);

        _cache.Evict(int.MaxValue);
        Assert.That(_cache.Match(Range(1, 12)).Length, Is.EqualTo(12), "a running sequence's prefix stays");
        Assert.That(_cache.Match(Range(50, 8)).Length, Is.Zero);
        Assert.That(_cache.LockedNodes(), Is.EqualTo(1));

        _cache.Unlock(match.Node);
        _cache.Evict(int.MaxValue);
        Assert.That(_pool.FreePages, Is.EqualTo(_pool.PageCount));
        Assert.That(_cache.CachedTokens, Is.Zero);
    }

    [Test]
    public void ALockTakenBeforeASplit_ProtectsBothHalves()
    {
        InsertFresh(Range(1, 12));
        PrefixMatch match = _cache.Match(Range(1, 12));
        _cache.Lock(match.Node);
        InsertFresh([1, 2, 3, 4, 5, 77, 78]); // splits the locked node after 5 tokens

        _cache.Evict(int.MaxValue);
        Assert.That(_cache.Match(Range(1, 12)).Length, Is.EqualTo(12));
        Assert.That(_cache.Match([1, 2, 3, 4, 5, 77, 78]).Length, Is.EqualTo(5), "the unlocked branch went");
        _cache.Unlock(match.Node);
        Assert.That(_cache.LockedNodes(), Is.Zero);
        AssertReferencesConsistent();
    }

    [Test]
    public void Evict_FreesParentsOnceTheirChildrenAreGone()
    {
        InsertFresh(Range(1, 10));
        InsertFresh([1, 2, 3, 40, 41]);
        InsertFresh([1, 2, 3, 40, 42, 43]);
        int used = _pool.UsedPages;
        Assert.That(_cache.Evict(int.MaxValue), Is.EqualTo(used));
        Assert.That(_pool.FreePages, Is.EqualTo(_pool.PageCount));
        Assert.That(_cache.CachedTokens, Is.Zero);
        Assert.That(_cache.EvictedTokens, Is.EqualTo(10 + 2 + 2));
    }

    [Test]
    public void Lookups_CountAdmissionsAndHitTokens()
    {
        _cache.RecordLookup(0);
        _cache.RecordLookup(7);
        Assert.That((_cache.Lookups, _cache.HitTokens), Is.EqualTo((2L, 7L)));
    }
}
