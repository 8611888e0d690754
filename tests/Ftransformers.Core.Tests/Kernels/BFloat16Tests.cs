using System.Runtime.Intrinsics;
using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class BFloat16Tests
{
    public enum Path { Scalar, Vector128, Vector256 }

    private static IEnumerable<TestCaseData> PathsAndLengths()
    {
        foreach (Path path in Enum.GetValues<Path>())
            foreach (int n in new[] { 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 257, 1000 })
                yield return new TestCaseData(path, n);
    }

    private static void RequirePath(Path path)
    {
        // Each path is tested where this machine can execute it; say so instead of passing silently elsewhere.
        if (path == Path.Vector256 && !Vector256.IsHardwareAccelerated)
            Assert.Ignore("Vector256 is not hardware accelerated on this machine.");
        if (path == Path.Vector128 && !Vector128.IsHardwareAccelerated)
            Assert.Ignore("Vector128 is not hardware accelerated on this machine.");
    }

    private static (ushort[] W, float[] X) RandomInputs(int n, int seed)
    {
        var rng = new Random(seed);
        var w = new ushort[n];
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            w[i] = BFloat16.FromSingle((float)(rng.NextDouble() * 4 - 2));
            x[i] = (float)(rng.NextDouble() * 4 - 2);
        }
        return (w, x);
    }

    [TestCaseSource(nameof(PathsAndLengths))]
    public void Dot_MatchesFloat64Reference(Path path, int n)
    {
        RequirePath(path);
        (ushort[] w, float[] x) = RandomInputs(n, seed: n);
        double reference = 0, magnitude = 0;
        for (int i = 0; i < n; i++)
        {
            reference += (double)BFloat16.ToSingle(w[i]) * x[i];
            magnitude += Math.Abs((double)BFloat16.ToSingle(w[i]) * x[i]);
        }
        float ours = path switch
        {
            Path.Scalar => BFloat16.DotScalar(w, x),
            Path.Vector128 => BFloat16.DotVector128(w, x),
            _ => BFloat16.DotVector256(w, x),
        };
        // F32 accumulation: each of n additions may round by half an ulp of the running magnitude.
        Assert.That(ours, Is.EqualTo(reference).Within(n * 6e-8 * magnitude + 1e-30));
    }

    [TestCaseSource(nameof(PathsAndLengths))]
    public void MultiplyAdd_MatchesFloat64Reference(Path path, int n)
    {
        RequirePath(path);
        (ushort[] w, float[] acc) = RandomInputs(n, seed: 1000 + n);
        float scale = -0.75f;
        double[] expected = acc.Select((a, i) => a + (double)BFloat16.ToSingle(w[i]) * scale).ToArray();
        switch (path)
        {
            case Path.Scalar: BFloat16.MultiplyAddScalar(w, scale, acc, 0); break;
            case Path.Vector128: BFloat16.MultiplyAddVector128(w, scale, acc); break;
            default: BFloat16.MultiplyAddVector256(w, scale, acc); break;
        }
        for (int i = 0; i < n; i++)
            Assert.That(acc[i], Is.EqualTo(expected[i]).Within(Math.Abs(expected[i]) * 6e-8 + 1e-7), $"element {i}");
    }

    [TestCaseSource(nameof(PathsAndLengths))]
    public void ToSingle_WidensExactly(Path path, int n)
    {
        RequirePath(path);
        (ushort[] w, _) = RandomInputs(n, seed: 2000 + n);
        var result = new float[n];
        switch (path)
        {
            case Path.Scalar: BFloat16.ToSingleScalar(w, result, 0); break;
            case Path.Vector128: BFloat16.ToSingleVector128(w, result); break;
            default: BFloat16.ToSingleVector256(w, result); break;
        }
        for (int i = 0; i < n; i++)
            Assert.That(BitConverter.SingleToUInt32Bits(result[i]), Is.EqualTo((uint)w[i] << 16));
    }

    [TestCase(1.0f, (ushort)0x3F80)]
    [TestCase(-2.0f, (ushort)0xC000)]
    [TestCase(1.00390625f, (ushort)0x3F80)] // exactly halfway between 0x3F80 and 0x3F81: ties to even
    [TestCase(1.01171875f, (ushort)0x3F82)] // halfway between 0x3F81 and 0x3F82: ties to even
    [TestCase(1.0078125f, (ushort)0x3F81)]
    public void FromSingle_RoundsToNearestEven(float value, ushort expected)
    {
        Assert.That(BFloat16.FromSingle(value), Is.EqualTo(expected));
    }

    [Test]
    public void FromSingle_KeepsNaN()
    {
        Assert.That(float.IsNaN(BFloat16.ToSingle(BFloat16.FromSingle(float.NaN))), Is.True);
    }
}
