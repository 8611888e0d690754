using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int8DotTests
{
    private static IEnumerable<TestCaseData> Cases() =>
        from path in KernelPaths.All
        from n in new[] { 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 512, 7168 }
        select new TestCaseData(path, n);

    [TestCaseSource(nameof(Cases))]
    public void Dot_EqualsExactIntegerSum(KernelPath path, int n)
    {
        KernelPaths.Require(path);
        var rng = new Random(n * 7 + (int)path);
        sbyte[] a = Enumerable.Range(0, n).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        sbyte[] b = Enumerable.Range(0, n).Select(_ => (sbyte)rng.Next(-127, 128)).ToArray();
        long expected = a.Zip(b, (x, y) => (long)x * y).Sum();
        Assert.That(Int8Dot.DotOn(path, a, b), Is.EqualTo(expected));
    }

    [TestCaseSource(nameof(Cases))]
    public void Dot_OfExtremeValues_DoesNotSaturate(KernelPath path, int n)
    {
        KernelPaths.Require(path);
        sbyte[] a = Enumerable.Range(0, n).Select(i => (sbyte)(i % 2 == 0 ? -127 : 127)).ToArray();
        sbyte[] b = Enumerable.Range(0, n).Select(i => (sbyte)(i % 2 == 0 ? -127 : 127)).ToArray();
        Assert.That(Int8Dot.DotOn(path, a, b), Is.EqualTo(n * 127 * 127));
    }

    [Test]
    public void Dispatch_PicksTheFastestSupportedPath()
    {
        Assert.That(Int8Dot.ActivePath, Is.EqualTo(KernelPaths.Fastest));
        Assert.That(Int4Dot.ActivePath, Is.EqualTo(KernelPaths.Fastest));
    }
}
