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

    // Blocks of 32 in one pass (AVX2) and block by block equal the per-block definition: |max| over the block,
    // BlockScale, scalar rounding, with ties, a zero block, a subnormal one (no finite inverse), a huge one, a lone
    // value and the clamp's edge.
    [TestCase("Avx2")]
    [TestCase("Each")]
    public void Blocks32_EqualThePerBlockDefinition(string path)
    {
        if (path == "Avx2" && !System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            Assert.Ignore("AVX2 is not supported on this CPU.");
        var rng = new Random(9);
        const int blocks = 12;
        float[] x = Enumerable.Range(0, blocks * 32).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
        // Block 1: ties once scaled (|max| 127 -> inverse 1).
        for (int i = 0; i < 32; i++)
            x[32 + i] = i == 0 ? -127f : rng.Next(-126, 126) + 0.5f;
        Array.Clear(x, 2 * 32, 32); // zero block
        for (int i = 0; i < 32; i++)
        {
            x[3 * 32 + i] = 1e-40f * (i % 3 - 1); // subnormal: 127 / |max| overflows
            x[4 * 32 + i] = 1e30f * (float)(rng.NextDouble() - 0.5);
            x[5 * 32 + i] = i == 17 ? -3f : 0f;
        }

        sbyte[] codes = new sbyte[x.Length], expectedCodes = new sbyte[x.Length];
        float[] scales = new float[blocks], sums = new float[blocks];
        int[] codeSums = new int[blocks];
        if (path == "Avx2")
            Int8Codes.QuantizeBlocks32Avx2(x, codes, scales, codeSums, sums);
        else
            Int8Codes.QuantizeBlocksEach(x, 32, codes, scales, codeSums, sums);
        for (int b = 0; b < blocks; b++)
        {
            float[] block = x[(b * 32)..((b + 1) * 32)];
            (float scale, float inverse) = Int8Codes.BlockScale(block.Max(MathF.Abs));
            int sum = Int8Codes.QuantizeScalar(block, inverse, expectedCodes.AsSpan(b * 32, 32), 0);
            Assert.That((scales[b], codeSums[b], sums[b]), Is.EqualTo((scale, sum, scale * sum)), $"block {b}");
        }
        Assert.That(codes, Is.EqualTo(expectedCodes));
        Assert.That((scales[2], scales[3]), Is.EqualTo((0f, 0f)), "blocks without a finite inverse quantize to zero");
        Assert.That(codes.AsSpan(5 * 32 + 17, 1)[0], Is.EqualTo((sbyte)-127));
    }
}
