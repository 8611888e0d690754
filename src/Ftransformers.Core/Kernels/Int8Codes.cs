using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Rounds floats to INT8 codes, code = clamp(round(x * inverse), -127, 127) with ties to even, and sums the codes:
/// the run-time activation quantization in front of every INT8 and INT4 product.
/// </summary>
public static class Int8Codes
{
    /// <summary>
    /// The scale of a block whose largest magnitude is <paramref name="absMax"/> (x ≈ scale · code) and its inverse;
    /// blocks too small for a finite inverse (all zeros, or subnormal) get 0 for both, so their codes are 0.
    /// </summary>
    public static (float Scale, float Inverse) BlockScale(float absMax)
    {
        float inverse = 127f / absMax;
        if (!float.IsFinite(inverse))
            inverse = 0;
        return (inverse == 0 ? 0 : absMax / 127f, inverse);
    }

    /// <summary>
    /// Quantizes consecutive blocks of 32 values, each with its own <see cref="BlockScale"/>: codes, block scales, and
    /// scale · Σ codes per block (the term an INT4 weight's min multiplies). With AVX2 (or Vector128 on ARM64) each block
    /// is one pass in registers; a per-block MaxMagnitude and <see cref="Quantize"/> cost more in calls.
    /// </summary>
    public static void QuantizeBlocks32(ReadOnlySpan<float> values, Span<sbyte> codes, Span<float> scales, Span<float> scaledSums)
    {
        int blocks = values.Length / 32;
        if (values.Length % 32 != 0 || codes.Length < values.Length || scales.Length < blocks || scaledSums.Length < blocks)
            throw new ArgumentException($"{values.Length} values need a multiple of 32, as many codes and a scale and a sum per block.");
        if (Avx2.IsSupported)
            QuantizeBlocks32Avx2(values, codes, scales, scaledSums);
        else if (Vector128.IsHardwareAccelerated)
            QuantizeBlocks32Vector128(values, codes, scales, scaledSums);
        else
            QuantizeBlocks32Scalar(values, codes, scales, scaledSums);
    }

    internal static void QuantizeBlocks32Scalar(ReadOnlySpan<float> values, Span<sbyte> codes, Span<float> scales, Span<float> scaledSums)
    {
        for (int b = 0; b < values.Length / 32; b++)
        {
            ReadOnlySpan<float> block = values.Slice(b * 32, 32);
            (float scale, float inverse) = BlockScale(MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(block)));
            scales[b] = scale;
            scaledSums[b] = scale * QuantizeScalar(block, inverse, codes.Slice(b * 32, 32), 0);
        }
    }

    internal static void QuantizeBlocks32Vector128(ReadOnlySpan<float> values, Span<sbyte> codes, Span<float> scales, Span<float> scaledSums)
    {
        ref float x = ref MemoryMarshal.GetReference(values);
        ref sbyte c = ref MemoryMarshal.GetReference(codes);
        Vector128<int> low = Vector128.Create(-127), high = Vector128.Create(127);
        for (int b = 0, i = 0; i < values.Length; b++, i += 32)
        {
            Vector128<float> m = Vector128<float>.Zero;
            for (int j = 0; j < 32; j += 4)
                m = Vector128.Max(m, Vector128.Abs(Vector128.LoadUnsafe(ref x, (nuint)(i + j))));
            m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
            (float scale, float inverse) = BlockScale(Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2))).ToScalar());
            Vector128<float> by = Vector128.Create(inverse);
            Vector128<int> sums = Vector128<int>.Zero;
            for (int j = 0; j < 32; j += 16) // two halves of four vectors, each narrowed to 16 codes
            {
                Vector128<int> q0 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + j)) * by), q1 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + j + 4)) * by);
                Vector128<int> q2 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + j + 8)) * by), q3 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + j + 12)) * by);
                Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).StoreUnsafe(ref c, (nuint)(i + j));
                sums += (q0 + q1) + (q2 + q3);
            }
            scales[b] = scale;
            scaledSums[b] = scale * Vector128.Sum(sums);
        }

        Vector128<int> Round(Vector128<float> v) => Vector128.Min(Vector128.Max(Vector128.ConvertToInt32(Vector128.Round(v)), low), high);
    }

    // AVX2: vcvtps2dq rounds to nearest even (the default MXCSR mode .NET keeps) and the saturating packs narrow to
    // bytes, so no clamp is needed: with a block's own scale, |x · inverse| rounds to at most 127.
    internal static void QuantizeBlocks32Avx2(ReadOnlySpan<float> values, Span<sbyte> codes, Span<float> scales, Span<float> scaledSums)
    {
        ref float x = ref MemoryMarshal.GetReference(values);
        ref sbyte c = ref MemoryMarshal.GetReference(codes);
        Vector256<int> order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7); // undoes the packs' per-lane interleave
        for (int b = 0, i = 0; i < values.Length; b++, i += 32)
        {
            Vector256<float> v0 = Vector256.LoadUnsafe(ref x, (nuint)i), v1 = Vector256.LoadUnsafe(ref x, (nuint)(i + 8));
            Vector256<float> v2 = Vector256.LoadUnsafe(ref x, (nuint)(i + 16)), v3 = Vector256.LoadUnsafe(ref x, (nuint)(i + 24));
            Vector256<float> m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            Vector128<float> h = Vector128.Max(m.GetLower(), m.GetUpper());
            h = Vector128.Max(h, Vector128.Shuffle(h, Vector128.Create(2, 3, 0, 1)));
            h = Vector128.Max(h, Vector128.Shuffle(h, Vector128.Create(1, 0, 3, 2)));
            (float scale, float inverse) = BlockScale(h.ToScalar());
            Vector256<float> by = Vector256.Create(inverse);
            Vector256<int> q0 = Avx.ConvertToVector256Int32(v0 * by), q1 = Avx.ConvertToVector256Int32(v1 * by);
            Vector256<int> q2 = Avx.ConvertToVector256Int32(v2 * by), q3 = Avx.ConvertToVector256Int32(v3 * by);
            Vector256<sbyte> packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(q0, q1), Avx2.PackSignedSaturate(q2, q3));
            Avx2.PermuteVar8x32(packed.AsInt32(), order).AsSByte().StoreUnsafe(ref c, (nuint)i);
            scales[b] = scale;
            scaledSums[b] = scale * Vector256.Sum((q0 + q1) + (q2 + q3));
        }
    }

    /// <summary>Writes the codes of <paramref name="values"/> and returns their sum.</summary>
    public static int Quantize(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes)
    {
        if (codes.Length < values.Length)
            throw new ArgumentException("Destination is shorter than source.", nameof(codes));
        if (Vector256.IsHardwareAccelerated)
            return QuantizeVector256(values, inverse, codes);
        if (Vector128.IsHardwareAccelerated)
            return QuantizeVector128(values, inverse, codes);
        return QuantizeScalar(values, inverse, codes, 0);
    }

    internal static int QuantizeScalar(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes, int start)
    {
        int sum = 0;
        for (int i = start; i < values.Length; i++)
        {
            int q = Math.Clamp((int)MathF.Round(values[i] * inverse), -127, 127);
            codes[i] = (sbyte)q;
            sum += q;
        }
        return sum;
    }

    internal static int QuantizeVector128(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes)
    {
        ref float x = ref MemoryMarshal.GetReference(values);
        ref sbyte c = ref MemoryMarshal.GetReference(codes);
        Vector128<float> scale = Vector128.Create(inverse);
        Vector128<int> low = Vector128.Create(-127), high = Vector128.Create(127), sums = Vector128<int>.Zero;
        int i = 0;
        for (; i + 16 <= values.Length; i += 16)
        {
            Vector128<int> q0 = Round(Vector128.LoadUnsafe(ref x, (nuint)i)), q1 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + 4)));
            Vector128<int> q2 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + 8))), q3 = Round(Vector128.LoadUnsafe(ref x, (nuint)(i + 12)));
            sums += (q0 + q1) + (q2 + q3);
            Vector128.Narrow(Vector128.Narrow(q0, q1), Vector128.Narrow(q2, q3)).StoreUnsafe(ref c, (nuint)i);
        }
        return Vector128.Sum(sums) + QuantizeScalar(values, inverse, codes, i);

        Vector128<int> Round(Vector128<float> v) => Vector128.Min(Vector128.Max(Vector128.ConvertToInt32(Vector128.Round(v * scale)), low), high);
    }

    internal static int QuantizeVector256(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes)
    {
        ref float x = ref MemoryMarshal.GetReference(values);
        ref sbyte c = ref MemoryMarshal.GetReference(codes);
        Vector256<float> scale = Vector256.Create(inverse);
        Vector256<int> low = Vector256.Create(-127), high = Vector256.Create(127), sums = Vector256<int>.Zero;
        int i = 0;
        for (; i + 32 <= values.Length; i += 32)
        {
            Vector256<int> q0 = Round(Vector256.LoadUnsafe(ref x, (nuint)i)), q1 = Round(Vector256.LoadUnsafe(ref x, (nuint)(i + 8)));
            Vector256<int> q2 = Round(Vector256.LoadUnsafe(ref x, (nuint)(i + 16))), q3 = Round(Vector256.LoadUnsafe(ref x, (nuint)(i + 24)));
            sums += (q0 + q1) + (q2 + q3);
            // Vector256.Narrow keeps element order (unlike vpackssdw's per-lane packing).
            Vector256.Narrow(Vector256.Narrow(q0, q1), Vector256.Narrow(q2, q3)).StoreUnsafe(ref c, (nuint)i);
        }
        return Vector256.Sum(sums) + QuantizeScalar(values, inverse, codes, i);

        Vector256<int> Round(Vector256<float> v) => Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(v * scale)), low), high);
    }
}
