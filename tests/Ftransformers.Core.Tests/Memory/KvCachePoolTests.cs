using Ftransformers.Kernels;
using Ftransformers.Memory;
using NUnit.Framework;

namespace Ftransformers.Tests.Memory;

[TestFixture]
public class KvCachePoolTests
{
    [Test]
    public void Pages_AreHandedOutOnce_AndReturnWhenTheLastReferenceGoes()
    {
        using var pool = new KvCachePool(layers: 2, rowWidth: 8, pageSize: 4, pageCount: 3, KvCacheDType.F32);
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
        using var pool = new KvCachePool(1, 4, 2, 2, KvCacheDType.F32);
        int page = pool.Allocate();
        pool.Release(page);
        Assert.Throws<InvalidOperationException>(() => pool.Release(page));
        Assert.Throws<InvalidOperationException>(() => pool.Retain(page));
    }

    [Test]
    public void F32Rows_ReadBackExactly_PerLayerAndSlot()
    {
        using var pool = new KvCachePool(layers: 3, rowWidth: 5, pageSize: 2, pageCount: 4, KvCacheDType.F32);
        for (int layer = 0; layer < 3; layer++)
            for (int slot = 0; slot < 8; slot++)
                pool.Write(layer, slot, Row(layer, slot, 5));
        for (int layer = 0; layer < 3; layer++)
            for (int slot = 0; slot < 8; slot++)
                Assert.That(pool.RowF32(layer, slot).ToArray(), Is.EqualTo(Row(layer, slot, 5)));
        Assert.Throws<InvalidOperationException>(() => pool.RowBf16(0, 0).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.RowF32(0, 8).ToArray());
    }

    [Test]
    public void Bf16Rows_HoldTheRoundedValues()
    {
        using var pool = new KvCachePool(layers: 1, rowWidth: 6, pageSize: 4, pageCount: 1, KvCacheDType.BF16);
        float[] row = [1.00390625f, -3.14159f, 1e-3f, 65504f, 0f, -0.5f];
        pool.Write(0, 2, row);
        var back = new float[6];
        BFloat16.ToSingle(pool.RowBf16(0, 2), back);
        for (int i = 0; i < row.Length; i++)
            Assert.That(back[i], Is.EqualTo(BFloat16.ToSingle(BFloat16.FromSingle(row[i]))));
        Assert.That(back[1], Is.EqualTo(row[1]).Within(0.5).Percent);
        Assert.That(back[0], Is.Not.EqualTo(row[0]), "BF16 keeps 8 bits of mantissa");
    }

    [Test]
    public void CopyPositions_CopiesTheLeadingRowsOfEveryLayer_AndNothingElse()
    {
        using var pool = new KvCachePool(layers: 2, rowWidth: 3, pageSize: 4, pageCount: 2, KvCacheDType.F32);
        for (int layer = 0; layer < 2; layer++)
            for (int slot = 0; slot < 8; slot++)
                pool.Write(layer, slot, Row(layer, slot, 3));
        pool.CopyPositions(source: 0, destination: 1, count: 3);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int offset = 0; offset < 3; offset++)
                Assert.That(pool.RowF32(layer, 4 + offset).ToArray(), Is.EqualTo(Row(layer, offset, 3)));
            Assert.That(pool.RowF32(layer, 7).ToArray(), Is.EqualTo(Row(layer, 7, 3)));
        }
    }

    [Test]
    public void PagesFor_RoundsUp()
    {
        using var pool = new KvCachePool(1, 1, 16, 4, KvCacheDType.F32);
        Assert.That(new[] { pool.PagesFor(0), pool.PagesFor(1), pool.PagesFor(16), pool.PagesFor(17) }, Is.EqualTo(new[] { 0, 1, 1, 2 }));
        Assert.That(pool.CapacityTokens, Is.EqualTo(64));
    }

    private static float[] Row(int layer, int slot, int width) => Enumerable.Range(0, width).Select(i => layer * 1000f + slot * 10f + i).ToArray();
}
