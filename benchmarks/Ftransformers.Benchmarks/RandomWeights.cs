using Ftransformers.Model;
using Ftransformers.Quantization;

namespace Ftransformers.Benchmarks;

/// <summary>Random quantized matrices at real shapes, made directly in the quantized layout (quantizing would take minutes).</summary>
internal static class RandomWeights
{
    public static Int4WeightMatrix Int4(string name, int rows, int cols, Random rng)
    {
        byte[] packed = GC.AllocateArray<byte>(rows * cols / 2, pinned: true);
        rng.NextBytes(packed);
        int groups = rows * cols / 32;
        Half[] scales = GC.AllocateArray<Half>(groups, pinned: true);
        Half[] mins = GC.AllocateArray<Half>(groups, pinned: true);
        for (int i = 0; i < groups; i++)
        {
            float scale = 0.001f + (float)rng.NextDouble() * 0.01f;
            (scales[i], mins[i]) = ((Half)scale, (Half)(-8 * scale));
        }
        return new Int4WeightMatrix(name, Int4Weights.FromPinnedArrays(rows, cols, Int4Format.Default, packed, scales, mins));
    }

    public static Int8WeightMatrix Int8(string name, int rows, int cols, Random rng)
    {
        sbyte[] codes = GC.AllocateArray<sbyte>(rows * cols, pinned: true);
        rng.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(codes.AsSpan()));
        for (int i = 0; i < codes.Length; i++)
            if (codes[i] == -128)
                codes[i] = -127;
        float[] scales = GC.AllocateArray<float>(rows, pinned: true);
        Array.Fill(scales, 0.01f);
        return new Int8WeightMatrix(name, Int8Weights.FromPinnedArrays(rows, cols, codes, scales));
    }

    public static float[] Activations(int n, Random rng) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
}
