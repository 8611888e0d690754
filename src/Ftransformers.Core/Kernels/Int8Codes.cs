using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Ftransformers.Kernels;

/// <summary>
/// Rounds floats to INT8 codes, code = clamp(round(x * inverse), -127, 127) with ties to even, and sums the codes:
/// the run-time activation quantization in front of every INT8 and INT4 product.
/// </summary>
public static class Int8Codes
{
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
