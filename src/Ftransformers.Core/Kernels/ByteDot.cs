using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// u8 · s8 dot products in eight int32 lanes, each lane the sum of four neighbouring products, as a type so that each
/// x86 path compiles to its own loop. Exact while a pair of products fits vpmaddubsw's int16 (|u| ≤ 128, as every
/// caller's unsigned operand is).
/// </summary>
internal interface IByteDot
{
    static abstract Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s);
}

/// <summary>AVX-VNNI: one vpdpbusd.</summary>
internal readonly struct VnniByteDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s) => AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s);
}

/// <summary>AVX2: vpmaddubsw into int16 pairs, then vpmaddwd against ones.</summary>
internal readonly struct Avx2ByteDot : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> u, Vector256<sbyte> s) => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
}
