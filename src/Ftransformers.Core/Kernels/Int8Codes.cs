using System.Runtime.CompilerServices;
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
    internal static (float Scale, float Inverse) BlockScale(float absMax)
    {
        float inverse = 127f / absMax;
        if (!float.IsFinite(inverse))
            inverse = 0;
        return (inverse == 0 ? 0 : absMax / 127f, inverse);
    }

    /// <summary>
    /// Quantizes consecutive blocks of <paramref name="blockSize"/> values (a whole token for W8A8, 32 for INT4), each
    /// with its own <see cref="BlockScale"/>: codes, block scales, Σ codes per block and scale · Σ codes (the term an
    /// INT4 weight's min multiplies; the integer sum corrects the offset of the VNNI INT8 kernel). Blocks of 32 on AVX2
    /// take one pass in registers each; a MaxMagnitude and a <see cref="Quantize"/> call per block cost about twice as
    /// much there.
    /// </summary>
    public static void QuantizeBlocks(ReadOnlySpan<float> values, int blockSize, Span<sbyte> codes, Span<float> scales, Span<int> codeSums, Span<float> scaledSums)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        int blocks = values.Length / blockSize;
        if (values.Length % blockSize != 0 || codes.Length < values.Length || scales.Length < blocks || codeSums.Length < blocks || scaledSums.Length < blocks)
            throw new ArgumentException($"{values.Length} values need a multiple of {blockSize}, as many codes and a scale and two sums per block.");
        if (blockSize == 32 && Avx2.IsSupported)
            QuantizeBlocks32Avx2(values, codes, scales, codeSums, scaledSums);
        else
            QuantizeBlocksEach(values, blockSize, codes, scales, codeSums, scaledSums);
    }

    // Block by block: |max| (MaxMagnitude keeps the sign), then the codes on Quantize's path.
    internal static void QuantizeBlocksEach(ReadOnlySpan<float> values, int blockSize, Span<sbyte> codes, Span<float> scales, Span<int> codeSums, Span<float> scaledSums)
    {
        for (int b = 0; b < values.Length / blockSize; b++)
        {
            ReadOnlySpan<float> block = values.Slice(b * blockSize, blockSize);
            (float scale, float inverse) = BlockScale(MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(block)));
            scales[b] = scale;
            codeSums[b] = Quantize(block, inverse, codes.Slice(b * blockSize, blockSize));
            scaledSums[b] = scale * codeSums[b];
        }
    }

    // AVX2: vcvtps2dq rounds to nearest even (the default MXCSR mode .NET keeps) and the saturating packs narrow to
    // bytes, so no clamp is needed: with a block's own scale, |x · inverse| rounds to at most 127.
    internal static void QuantizeBlocks32Avx2(ReadOnlySpan<float> values, Span<sbyte> codes, Span<float> scales, Span<int> codeSums, Span<float> scaledSums)
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
            codeSums[b] = Vector256.Sum((q0 + q1) + (q2 + q3));
            scaledSums[b] = scale * codeSums[b];
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

        [MethodImpl(MethodImplOptions.AggressiveInlining)] // a call per vector otherwise (it captures locals)
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

        [MethodImpl(MethodImplOptions.AggressiveInlining)] // a call per vector otherwise (it captures locals)
        Vector256<int> Round(Vector256<float> v) => Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(v * scale)), low), high);
    }
}
