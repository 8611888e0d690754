using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

[TestFixture]
public class RmsNormAndRopeTests
{
    [Test]
    public void RmsNorm_DividesByRootMeanSquareAndScales()
    {
        // mean of squares of [3, 4] is 12.5; eps 0.5 makes it 13.
        float[] y = new float[2];
        RmsNorm.Apply([3, 4], [2, -1], 0.5f, y);
        Assert.That(y[0], Is.EqualTo(6 / Math.Sqrt(13)).Within(1e-6));
        Assert.That(y[1], Is.EqualTo(-4 / Math.Sqrt(13)).Within(1e-6));
    }

    [Test]
    public void Rope_RotatesInterleavedPairs()
    {
        float[] x = [1, 2, 3, 4];
        Rope.ApplyInterleaved(x, [0, 1], [1, 0]);
        // Pair (1, 2) by 90 degrees -> (-2, 1); pair (3, 4) by 0 -> unchanged.
        Assert.That(x, Is.EqualTo(new float[] { -2, 1, 3, 4 }));
    }

    [Test]
    public void SiluMultiply_IsGateTimesSigmoidTimesUp()
    {
        float[] gate = [0, 1, -2], up = [5, 2, 3], y = new float[3];
        Activations.SiluMultiply(gate, up, y);
        for (int i = 0; i < 3; i++)
            Assert.That(y[i], Is.EqualTo(gate[i] / (1 + Math.Exp(-gate[i])) * up[i]).Within(1e-6));
    }
}
