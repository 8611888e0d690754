using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Quantization;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Benchmarks;

/// <summary>Random quantized matrices at real shapes, made directly in the quantized layout (quantizing would take minutes).</summary>
internal static class RandomWeights
{
    public static Int4WeightMatrix Int4(string name, int rows, int cols, Random rng) => new(name, Int4Rows(rows, cols, rng));

    /// <summary>Row-major group-32 INT4 weights with random codes and small scales.</summary>
    public static Int4Weights Int4Rows(int rows, int cols, Random rng)
    {
        var packed = PinnedArray<byte>.Uninitialized(rows * cols / 2);
        rng.NextBytes(packed.Span);
        int groups = rows * cols / 32;
        var scales = PinnedArray<Half>.Uninitialized(groups);
        var mins = PinnedArray<Half>.Uninitialized(groups);
        for (int i = 0; i < groups; i++)
        {
            float scale = 0.001f + (float)rng.NextDouble() * 0.01f;
            (scales.Span[i], mins.Span[i]) = ((Half)scale, (Half)(-8 * scale));
        }
        return Int4Weights.FromOwned(rows, cols, Int4Format.Default, packed, scales, mins);
    }

    public static Int8WeightMatrix Int8(string name, int rows, int cols, Random rng)
    {
        var codes = PinnedArray<sbyte>.Uninitialized(rows * cols);
        Span<sbyte> span = codes.Span;
        rng.NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(span));
        for (int i = 0; i < span.Length; i++)
            if (span[i] == -128)
                span[i] = -127;
        var scales = PinnedArray<float>.Uninitialized(rows);
        scales.Span.Fill(0.01f);
        return new Int8WeightMatrix(name, Int8Weights.FromOwned(rows, cols, codes, scales));
    }

    /// <summary>Q4_K blocks with random codes, 6-bit scales and mins under small F16 super-scales.</summary>
    public static unsafe KBlockWeightMatrix Q4K(string name, int rows, int cols, Random rng)
    {
        var blocks = PinnedArray<byte>.Uninitialized((int)Ftransformers.Kernels.KBlockLayout.BytesOf(Ftransformers.Kernels.KBlockFormat.Q4K, rows, cols));
        rng.NextBytes(blocks.Span);
        for (int at = 0; at < blocks.Length; at += Ftransformers.Kernels.KBlockLayout.Q4KBlockBytes)
        {
            System.Runtime.InteropServices.MemoryMarshal.Write(blocks.Span[at..], (Half)(0.0002f + (float)rng.NextDouble() * 0.0002f));
            System.Runtime.InteropServices.MemoryMarshal.Write(blocks.Span[(at + 2)..], (Half)(0.0004f + (float)rng.NextDouble() * 0.0004f));
        }
        return new KBlockWeightMatrix(name, new Ftransformers.Kernels.KBlockLayout(Ftransformers.Kernels.KBlockFormat.Q4K, blocks.Pointer, rows, cols, blocks));
    }

    /// <summary>Q6_K blocks with random codes and 8-bit scales under small F16 super-scales.</summary>
    public static unsafe KBlockWeightMatrix Q6K(string name, int rows, int cols, Random rng)
    {
        var blocks = PinnedArray<byte>.Uninitialized((int)Ftransformers.Kernels.KBlockLayout.BytesOf(Ftransformers.Kernels.KBlockFormat.Q6K, rows, cols));
        rng.NextBytes(blocks.Span);
        for (int at = 0; at < blocks.Length; at += Ftransformers.Kernels.KBlockLayout.Q6KBlockBytes)
            System.Runtime.InteropServices.MemoryMarshal.Write(blocks.Span[(at + 208)..], (Half)(0.00002f + (float)rng.NextDouble() * 0.00002f));
        return new KBlockWeightMatrix(name, new Ftransformers.Kernels.KBlockLayout(Ftransformers.Kernels.KBlockFormat.Q6K, blocks.Pointer, rows, cols, blocks));
    }

    public static float[] Activations(int n, Random rng) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
}
