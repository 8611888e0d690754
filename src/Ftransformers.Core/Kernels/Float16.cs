using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Widens finite F16 values to F32 exactly, for INT4 scales and mins, in four vector operations per lane: sign-extend
/// to 32 bits, shift the exponent and mantissa into F32's fields (the sign bit stays on top), mask, and multiply by
/// 2^112 to rebias the exponent (subnormals come out right too). Infinities and NaNs, which the quantizer never
/// writes, come out as large finite values. .NET 10 exposes no F16C conversion, and TensorPrimitives' general one
/// costs several times more.
/// </summary>
public static class Float16
{
    private const uint FieldMask = 0x8FFF_E000; // sign, then exponent and mantissa shifted by 13; bits 30..28 cleared
    private static readonly float Rebias = BitConverter.UInt32BitsToSingle((127 + 112) << 23); // 2^112

    // One F16 (the super-scale of a GGUF block) as the library converts it, infinities and NaNs included, without the
    // library's call per value and without F32 subnormals (which x86 cores compute slowly, and which small super-scales
    // would make): the exponent rebiased; a subnormal F16 (exponent 0, common for the small d of a block of small
    // weights) is its mantissa over 2^-14, minus 2^-14.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ToSingle(ushort bits)
    {
        uint magnitude = (uint)(bits & 0x7FFF) << 13, sign = (uint)(bits & 0x8000) << 16;
        // Without branches: 1 where the exponent is 0 (subnormal), and where it is 31 (infinity, NaN).
        uint subnormal = (uint)((bits & 0x7C00) - 1) >> 31, special = (uint)((bits & 0x7C00) + 0x400) >> 15;
        // Normal: the exponent + (127 - 15), and once more for infinity and NaN (F32's exponent 255). Subnormal:
        // 2^-14 · (1 + m / 1024) − 2^-14.
        float value = BitConverter.UInt32BitsToSingle(magnitude + 0x38000000 + (subnormal << 23) + special * 0x38000000) - subnormal * 6.103515625e-05f;
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) | sign);
    }

    /// <summary>
    /// <see cref="ToSingle(ushort)"/> on four F16 values at once (each lane's low 16 bits): a block's super-scales
    /// converted in a few vector operations, where the scalar conversion is about twenty instructions a value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> ToSingle(Vector128<uint> bits)
    {
        Vector128<uint> exponent = bits & Vector128.Create(0x7C00u), magnitude = (bits & Vector128.Create(0x7FFFu)) << 13;
        Vector128<uint> subnormal = Vector128.Equals(exponent, Vector128<uint>.Zero), special = Vector128.Equals(exponent, Vector128.Create(0x7C00u));
        Vector128<float> value = (magnitude + Vector128.Create(0x38000000u) + (subnormal & Vector128.Create(1u << 23)) + (special & Vector128.Create(0x38000000u))).AsSingle()
            - (subnormal & Vector128.Create(6.103515625e-05f).AsUInt32()).AsSingle();
        return (value.AsUInt32() | ((bits & Vector128.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>Widens <paramref name="source"/> into <paramref name="destination"/>.</summary>
    public static void ToSingle(ReadOnlySpan<Half> source, Span<float> destination)
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

    internal static void ToSingleScalar(ReadOnlySpan<Half> source, Span<float> destination, int start)
    {
        for (int i = start; i < source.Length; i++)
        {
            int bits = (short)BitConverter.HalfToInt16Bits(source[i]);
            destination[i] = BitConverter.UInt32BitsToSingle((uint)(bits << 13) & FieldMask) * Rebias;
        }
    }

    internal static void ToSingleVector128(ReadOnlySpan<Half> source, Span<float> destination)
    {
        ref short s = ref Unsafe16(source);
        ref float d = ref MemoryMarshal.GetReference(destination);
        Vector128<int> mask = Vector128.Create(FieldMask).AsInt32();
        Vector128<float> rebias = Vector128.Create(Rebias);
        int i = 0;
        for (; i + 8 <= source.Length; i += 8)
        {
            (Vector128<int> lo, Vector128<int> hi) = Vector128.Widen(Vector128.LoadUnsafe(ref s, (nuint)i));
            ((Vector128.ShiftLeft(lo, 13) & mask).AsSingle() * rebias).StoreUnsafe(ref d, (nuint)i);
            ((Vector128.ShiftLeft(hi, 13) & mask).AsSingle() * rebias).StoreUnsafe(ref d, (nuint)(i + 4));
        }
        ToSingleScalar(source, destination, i);
    }

    internal static void ToSingleVector256(ReadOnlySpan<Half> source, Span<float> destination)
    {
        ref short s = ref Unsafe16(source);
        ref float d = ref MemoryMarshal.GetReference(destination);
        Vector256<int> mask = Vector256.Create(FieldMask).AsInt32();
        Vector256<float> rebias = Vector256.Create(Rebias);
        int i = 0;
        for (; i + 16 <= source.Length; i += 16)
        {
            (Vector256<int> lo, Vector256<int> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref s, (nuint)i));
            ((Vector256.ShiftLeft(lo, 13) & mask).AsSingle() * rebias).StoreUnsafe(ref d, (nuint)i);
            ((Vector256.ShiftLeft(hi, 13) & mask).AsSingle() * rebias).StoreUnsafe(ref d, (nuint)(i + 8));
        }
        ToSingleScalar(source, destination, i);
    }

    /// <summary>Eight F16 values at <paramref name="source"/> widened in registers (AVX2 kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> Widen8Avx2(Half* source) =>
        (Vector256.ShiftLeft(Avx2.ConvertToVector256Int32((short*)source), 13) & Vector256.Create(FieldMask).AsInt32()).AsSingle() * Vector256.Create(Rebias);

    /// <summary>Four F16 values at <paramref name="source"/> widened in registers (ARM64 kernels).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector128<float> Widen4AdvSimd(Half* source) =>
        (Vector128.ShiftLeft(AdvSimd.SignExtendWideningLower(Vector64.Load((short*)source)), 13) & Vector128.Create(FieldMask).AsInt32()).AsSingle() * Vector128.Create(Rebias);

    private static ref short Unsafe16(ReadOnlySpan<Half> source) => ref MemoryMarshal.GetReference(MemoryMarshal.Cast<Half, short>(source));
}
