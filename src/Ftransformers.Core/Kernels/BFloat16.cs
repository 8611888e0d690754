using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Ftransformers.Kernels;

/// <summary>
/// BF16 numerics over raw <c>ushort</c> bits (.NET 10 has no BFloat16 type): conversion, dot product
/// against F32 and scaled accumulation. A BF16 value is the upper half of an F32, so widening is exact.
/// </summary>
public static class BFloat16
{
    /// <summary>Widens one BF16 value to F32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Rounds an F32 to the nearest BF16 (ties to even; NaN stays NaN).</summary>
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Widens BF16 values to F32.</summary>
    public static void ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException("Destination is shorter than source.", nameof(destination));
        if (Vector256.IsHardwareAccelerated)
            ToSingleVector256(source, destination);
        else if (Vector128.IsHardwareAccelerated)
            ToSingleVector128(source, destination);
        else
            ToSingleScalar(source, destination, 0);
    }

    internal static void ToSingleScalar(ReadOnlySpan<ushort> source, Span<float> destination, int start)
    {
        for (int i = start; i < source.Length; i++)
            destination[i] = ToSingle(source[i]);
    }

    internal static void ToSingleVector128(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        ref ushort s = ref MemoryMarshal.GetReference(source);
        ref float d = ref MemoryMarshal.GetReference(destination);
        int i = 0;
        for (; i + 8 <= source.Length; i += 8)
        {
            (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(Vector128.LoadUnsafe(ref s, (nuint)i));
            Vector128.ShiftLeft(lo, 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
            Vector128.ShiftLeft(hi, 16).AsSingle().StoreUnsafe(ref d, (nuint)(i + 4));
        }
        ToSingleScalar(source, destination, i);
    }

    internal static void ToSingleVector256(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        ref ushort s = ref MemoryMarshal.GetReference(source);
        ref float d = ref MemoryMarshal.GetReference(destination);
        int i = 0;
        for (; i + 16 <= source.Length; i += 16)
        {
            (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
            Vector256.ShiftLeft(lo, 16).AsSingle().StoreUnsafe(ref d, (nuint)i);
            Vector256.ShiftLeft(hi, 16).AsSingle().StoreUnsafe(ref d, (nuint)(i + 8));
        }
        ToSingleScalar(source, destination, i);
    }

    /// <summary>Rounds F32 values to BF16.</summary>
    public static void FromSingle(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException("Destination is shorter than source.", nameof(destination));
        for (int i = 0; i < source.Length; i++)
            destination[i] = FromSingle(source[i]);
    }

    /// <summary>Dot product of BF16 weights with F32 activations, accumulated in F32.</summary>
    public static float Dot(ReadOnlySpan<ushort> weights, ReadOnlySpan<float> x)
    {
        if (weights.Length != x.Length)
            throw new ArgumentException($"Lengths differ: {weights.Length} weights, {x.Length} activations.");
        if (Vector256.IsHardwareAccelerated && x.Length >= 32)
            return DotVector256(weights, x);
        if (Vector128.IsHardwareAccelerated && x.Length >= 16)
            return DotVector128(weights, x);
        return DotScalar(weights, x);
    }

    /// <summary>Adds <paramref name="scale"/> times a BF16 row to <paramref name="accumulator"/>.</summary>
    public static void MultiplyAdd(ReadOnlySpan<ushort> row, float scale, Span<float> accumulator)
    {
        if (row.Length != accumulator.Length)
            throw new ArgumentException($"Lengths differ: {row.Length} weights, {accumulator.Length} accumulators.");
        if (Vector256.IsHardwareAccelerated)
            MultiplyAddVector256(row, scale, accumulator);
        else if (Vector128.IsHardwareAccelerated)
            MultiplyAddVector128(row, scale, accumulator);
        else
            MultiplyAddScalar(row, scale, accumulator, 0);
    }

    internal static void MultiplyAddScalar(ReadOnlySpan<ushort> row, float scale, Span<float> accumulator, int start)
    {
        for (int i = start; i < row.Length; i++)
            accumulator[i] = MathF.FusedMultiplyAdd(ToSingle(row[i]), scale, accumulator[i]);
    }

    internal static void MultiplyAddVector128(ReadOnlySpan<ushort> row, float scale, Span<float> accumulator)
    {
        ref ushort w = ref MemoryMarshal.GetReference(row);
        ref float a = ref MemoryMarshal.GetReference(accumulator);
        var s = Vector128.Create(scale);
        int i = 0;
        for (; i + 8 <= row.Length; i += 8)
        {
            (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(Vector128.LoadUnsafe(ref w, (nuint)i));
            Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(lo, 16).AsSingle(), s, Vector128.LoadUnsafe(ref a, (nuint)i)).StoreUnsafe(ref a, (nuint)i);
            Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(hi, 16).AsSingle(), s, Vector128.LoadUnsafe(ref a, (nuint)(i + 4))).StoreUnsafe(ref a, (nuint)(i + 4));
        }
        MultiplyAddScalar(row, scale, accumulator, i);
    }

    internal static void MultiplyAddVector256(ReadOnlySpan<ushort> row, float scale, Span<float> accumulator)
    {
        ref ushort w = ref MemoryMarshal.GetReference(row);
        ref float a = ref MemoryMarshal.GetReference(accumulator);
        var s = Vector256.Create(scale);
        int i = 0;
        for (; i + 16 <= row.Length; i += 16)
        {
            (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref w, (nuint)i));
            Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(lo, 16).AsSingle(), s, Vector256.LoadUnsafe(ref a, (nuint)i)).StoreUnsafe(ref a, (nuint)i);
            Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(hi, 16).AsSingle(), s, Vector256.LoadUnsafe(ref a, (nuint)(i + 8))).StoreUnsafe(ref a, (nuint)(i + 8));
        }
        MultiplyAddScalar(row, scale, accumulator, i);
    }

    internal static float DotScalar(ReadOnlySpan<ushort> weights, ReadOnlySpan<float> x)
    {
        // Four partial sums hide the add latency, as the vector paths do.
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int i = 0;
        for (; i + 4 <= x.Length; i += 4)
        {
            s0 += ToSingle(weights[i]) * x[i];
            s1 += ToSingle(weights[i + 1]) * x[i + 1];
            s2 += ToSingle(weights[i + 2]) * x[i + 2];
            s3 += ToSingle(weights[i + 3]) * x[i + 3];
        }
        for (; i < x.Length; i++)
            s0 += ToSingle(weights[i]) * x[i];
        return (s0 + s1) + (s2 + s3);
    }

    internal static float DotVector128(ReadOnlySpan<ushort> weights, ReadOnlySpan<float> x)
    {
        ref ushort w = ref MemoryMarshal.GetReference(weights);
        ref float v = ref MemoryMarshal.GetReference(x);
        Vector128<float> acc0 = Vector128<float>.Zero, acc1 = Vector128<float>.Zero;
        int i = 0;
        for (; i + 8 <= x.Length; i += 8)
        {
            (Vector128<uint> lo, Vector128<uint> hi) = Vector128.Widen(Vector128.LoadUnsafe(ref w, (nuint)i));
            acc0 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(lo, 16).AsSingle(), Vector128.LoadUnsafe(ref v, (nuint)i), acc0);
            acc1 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(hi, 16).AsSingle(), Vector128.LoadUnsafe(ref v, (nuint)(i + 4)), acc1);
        }
        float sum = Vector128.Sum(acc0 + acc1);
        for (; i < x.Length; i++)
            sum += ToSingle(weights[i]) * x[i];
        return sum;
    }

    internal static float DotVector256(ReadOnlySpan<ushort> weights, ReadOnlySpan<float> x)
    {
        ref ushort w = ref MemoryMarshal.GetReference(weights);
        ref float v = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector256<float> acc2 = Vector256<float>.Zero, acc3 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 32 <= x.Length; i += 32)
        {
            (Vector256<uint> a, Vector256<uint> b) = Vector256.Widen(Vector256.LoadUnsafe(ref w, (nuint)i));
            (Vector256<uint> c, Vector256<uint> d) = Vector256.Widen(Vector256.LoadUnsafe(ref w, (nuint)(i + 16)));
            acc0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(a, 16).AsSingle(), Vector256.LoadUnsafe(ref v, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(b, 16).AsSingle(), Vector256.LoadUnsafe(ref v, (nuint)(i + 8)), acc1);
            acc2 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(c, 16).AsSingle(), Vector256.LoadUnsafe(ref v, (nuint)(i + 16)), acc2);
            acc3 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(d, 16).AsSingle(), Vector256.LoadUnsafe(ref v, (nuint)(i + 24)), acc3);
        }
        for (; i + 16 <= x.Length; i += 16)
        {
            (Vector256<uint> a, Vector256<uint> b) = Vector256.Widen(Vector256.LoadUnsafe(ref w, (nuint)i));
            acc0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(a, 16).AsSingle(), Vector256.LoadUnsafe(ref v, (nuint)i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(b, 16).AsSingle(), Vector256.LoadUnsafe(ref v, (nuint)(i + 8)), acc1);
        }
        float sum = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        for (; i < x.Length; i++)
            sum += ToSingle(weights[i]) * x[i];
        return sum;
    }
}
