using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class Float8E4M3Tests
{
    [TestCase((byte)0x00, 0f)]
    [TestCase((byte)0x38, 1f)]
    [TestCase((byte)0xB8, -1f)]
    [TestCase((byte)0x40, 2f)]
    [TestCase((byte)0x3C, 1.5f)]
    [TestCase((byte)0x7E, 448f)] // largest finite value
    [TestCase((byte)0x01, 0.001953125f)] // smallest subnormal, 2^-9
    [TestCase((byte)0x08, 0.015625f)] // smallest normal, 2^-6
    public void Decodes_KnownValues(byte bits, float expected)
    {
        Assert.That(Float8E4M3.ToSingle(bits), Is.EqualTo(expected));
    }

    [Test]
    public void AllOnesMantissaAtTopExponent_IsNaN()
    {
        Assert.That(float.IsNaN(Float8E4M3.ToSingle(0x7F)) && float.IsNaN(Float8E4M3.ToSingle(0xFF)), Is.True);
    }
}
