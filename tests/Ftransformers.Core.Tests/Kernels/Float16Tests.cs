using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Float16Tests
{
    private delegate void Widen(ReadOnlySpan<Half> source, Span<float> destination);

    private static IEnumerable<TestCaseData> Cases() =>
        from path in new[] { "Scalar", "Vector128", "Vector256" }
        from n in new[] { 1, 7, 8, 17, 100 }
        select new TestCaseData(path, n);

    private static Widen Path(string path) => path switch
    {
        "Scalar" => (s, d) => Float16.ToSingleScalar(s, d, 0),
        "Vector128" => Float16.ToSingleVector128,
        _ => Float16.ToSingleVector256,
    };

    // Every finite F16 bit pattern: normals, subnormals, both zeros, the largest value, both signs.
    [TestCase("Scalar")]
    [TestCase("Vector128")]
    [TestCase("Vector256")]
    public void EveryFiniteValue_WidensExactly(string path)
    {
        Half[] all = Enumerable.Range(0, 1 << 16).Select(b => BitConverter.Int16BitsToHalf((short)b)).Where(Half.IsFinite).ToArray();
        var widened = new float[all.Length];
        Path(path)(all, widened);
        for (int i = 0; i < all.Length; i++)
            Assert.That(BitConverter.SingleToUInt32Bits(widened[i]), Is.EqualTo(BitConverter.SingleToUInt32Bits((float)all[i])), $"bits 0x{BitConverter.HalfToUInt16Bits(all[i]):X4}");
    }

    [TestCaseSource(nameof(Cases))]
    public void Lengths_WithATail_WidenEveryElement(string path, int n)
    {
        Half[] values = Enumerable.Range(0, n).Select(i => (Half)(i * 0.37f - 5)).ToArray();
        var widened = new float[n + 1];
        widened[n] = 42;
        Path(path)(values, widened);
        Assert.That(widened.Take(n), Is.EqualTo(values.Select(v => (float)v)));
        Assert.That(widened[n], Is.EqualTo(42), "nothing past the source is written");
    }
}
