using Ftransformers.Backends.Cpu;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using NUnit.Framework;

namespace Ftransformers.Tests.Backends;

[TestFixture]
public class CpuKvCacheTests
{
    [Test]
    public void F32Rows_ReadBackExactly_PerLayerAndSlot()
    {
        using var cache = new CpuKvCache(layers: 3, rowWidth: 5, slots: 8, KvCacheDType.F32);
        for (int layer = 0; layer < 3; layer++)
            for (int slot = 0; slot < 8; slot++)
                cache.Write(layer, slot, Row(layer, slot, 5));
        for (int layer = 0; layer < 3; layer++)
            for (int slot = 0; slot < 8; slot++)
                Assert.That(cache.RowF32(layer, slot).ToArray(), Is.EqualTo(Row(layer, slot, 5)));
        Assert.Throws<InvalidOperationException>(() => cache.RowBf16(0, 0).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.RowF32(0, 8).ToArray());
    }

    [Test]
    public void Bf16Rows_HoldTheRoundedValues()
    {
        using var cache = new CpuKvCache(layers: 1, rowWidth: 6, slots: 4, KvCacheDType.BF16);
        float[] row = [1.00390625f, -3.14159f, 1e-3f, 65504f, 0f, -0.5f];
        cache.Write(0, 2, row);
        var back = new float[6];
        BFloat16.ToSingle(cache.RowBf16(0, 2), back);
        for (int i = 0; i < row.Length; i++)
            Assert.That(back[i], Is.EqualTo(BFloat16.ToSingle(BFloat16.FromSingle(row[i]))));
        Assert.That(back[1], Is.EqualTo(row[1]).Within(0.5).Percent);
        Assert.That(back[0], Is.Not.EqualTo(row[0]), "BF16 keeps 8 bits of mantissa");
    }

    [Test]
    public void CopyPositions_CopiesTheLeadingRowsOfEveryLayer_AndNothingElse()
    {
        using var cache = new CpuKvCache(layers: 2, rowWidth: 3, slots: 8, KvCacheDType.F32);
        for (int layer = 0; layer < 2; layer++)
            for (int slot = 0; slot < 8; slot++)
                cache.Write(layer, slot, Row(layer, slot, 3));
        cache.CopyPositions(sourceSlot: 0, destinationSlot: 4, count: 3);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int offset = 0; offset < 3; offset++)
                Assert.That(cache.RowF32(layer, 4 + offset).ToArray(), Is.EqualTo(Row(layer, offset, 3)));
            Assert.That(cache.RowF32(layer, 7).ToArray(), Is.EqualTo(Row(layer, 7, 3)));
        }
    }

    [Test]
    public void ACopyPastTheEnd_IsRefused_AndADisposedCacheIsNotRead()
    {
        var cache = new CpuKvCache(layers: 1, rowWidth: 2, slots: 4, KvCacheDType.F32);
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.CopyPositions(sourceSlot: 2, destinationSlot: 0, count: 3));
        cache.Dispose();
        Assert.Throws<ObjectDisposedException>(() => cache.RowF32(0, 0).ToArray());
    }

    private static float[] Row(int layer, int slot, int width) => Enumerable.Range(0, width).Select(i => layer * 1000f + slot * 10f + i).ToArray();
}
