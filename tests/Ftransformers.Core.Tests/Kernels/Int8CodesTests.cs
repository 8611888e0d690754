using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Int8CodesTests
{
    private delegate int Quantizer(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes);

    private static IEnumerable<TestCaseData> Cases() =>
        from path in new[] { "Vector128", "Vector256" }
        from n in new[] { 1, 15, 32, 33, 100, 7168 }
        select new TestCaseData(path, n);

    private static Quantizer Path(string path) => path == "Vector128" ? Int8Codes.QuantizeVector128 : Int8Codes.QuantizeVector256;

    // Codes and sums equal the scalar definition, for values on both sides of every tie (x * inverse = k + 0.5) and
    // beyond the clamp.
    [TestCaseSource(nameof(Cases))]
    public void VectorPaths_EqualTheScalarDefinition(string path, int n)
    {
        var rng = new Random(n);
        const float inverse = 2f;
        float[] x = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? (rng.Next(-140, 140) + 0.5f) / inverse : (float)(rng.NextDouble() * 140 - 70)).ToArray();
        x[^1] = -150f; // beyond the clamp
        sbyte[] expected = new sbyte[n], actual = new sbyte[n];
        int expectedSum = Int8Codes.QuantizeScalar(x, inverse, expected, 0);
        Assert.That(Path(path)(x, inverse, actual), Is.EqualTo(expectedSum));
        Assert.That(actual, Is.EqualTo(expected));
    }

    [Test]
    public void Scalar_RoundsTiesToEven()
    {
        var codes = new sbyte[4];
        Assert.That(Int8Codes.QuantizeScalar([0.5f, 1.5f, -2.5f, 3f], 1f, codes, 0), Is.EqualTo(0 + 2 - 2 + 3));
        Assert.That(codes, Is.EqualTo(new sbyte[] { 0, 2, -2, 3 }));
    }
}
