using Ftransformers.Memory;
using NUnit.Framework;

namespace Ftransformers.Tests.Memory;

[TestFixture]
public class KvCachePoolTests
{
    [Test]
    public void Pages_AreHandedOutOnce_AndReturnWhenTheLastReferenceGoes()
    {
        var pool = new KvCachePool(pageSize: 4, pageCount: 3);
        int a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
        Assert.That(new[] { a, b, c }, Is.Unique);
        Assert.That(pool.FreePages, Is.EqualTo(0));
        Assert.Throws<InvalidOperationException>(() => pool.Allocate());

        pool.Retain(b);
        pool.Release(b);
        Assert.That(pool.FreePages, Is.EqualTo(0), "one reference remains");
        pool.Release(b);
        Assert.That(pool.FreePages, Is.EqualTo(1));
        Assert.That(pool.References(b), Is.EqualTo(0));
        Assert.That(pool.Allocate(), Is.EqualTo(b));
    }

    [Test]
    public void ReleasingAFreePage_OrSharingIt_Throws()
    {
        var pool = new KvCachePool(pageSize: 2, pageCount: 2);
        int page = pool.Allocate();
        pool.Release(page);
        Assert.Throws<InvalidOperationException>(() => pool.Release(page));
        Assert.Throws<InvalidOperationException>(() => pool.Retain(page));
    }

    [Test]
    public void PagesFor_RoundsUp()
    {
        var pool = new KvCachePool(pageSize: 16, pageCount: 4);
        Assert.That(new[] { pool.PagesFor(0), pool.PagesFor(1), pool.PagesFor(16), pool.PagesFor(17) }, Is.EqualTo(new[] { 0, 1, 1, 2 }));
        Assert.That(pool.CapacityTokens, Is.EqualTo(64));
    }
}
