using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Ftransformers.Kernels;
using Ftransformers.Threading;

namespace Ftransformers.Diagnostics;

/// <summary>
/// The machine's peak multiply-add rate on one kernel path, as kernels are judged against it: a loop of the
/// instructions the path's inner loop relies on, on registers only, over all the pool's threads. Twelve independent
/// accumulator chains hide the latency, so only throughput counts. Integer (INT8 products) or float (F32 FMA):
/// <list type="bullet">
/// <item>AVX2 / AVX-512: <c>acc += vpmaddubsw(w, x)</c> on 256 / 512-bit vectors (32 / 64 u8 × s8 products).</item>
/// <item>AVX-VNNI: <c>acc = vpdpbusd(acc, w, x)</c> on 256-bit vectors (32 products).</item>
/// <item>ARM64 SDOT: <c>acc = sdot(acc, w, x)</c> on 128-bit vectors (16 products).</item>
/// <item>Float: fused multiply-add on the path's vector width (16 / 8 / 4 products).</item>
/// </list>
/// </summary>
public sealed class ComputePeakProbe(KernelPath path, bool floatingPoint = false, int threads = 1) : IRangeWork
{
    private const int MinChunks = 64, Iterations = 1 << 14, Chains = 12;

    // A whole number of chunks per thread (at least 64 in all), so that no thread idles through a last round.
    private readonly int Chunks = Math.Max(1, threads) * ((MinChunks + Math.Max(1, threads) - 1) / Math.Max(1, threads));

    /// <summary>Products (multiply-adds) one <see cref="Run(ComputePool?)"/> performs.</summary>
    public long MultiplyAdds => (long)Chunks * Iterations * Chains * (floatingPoint ? FloatLanes(path) : ProductsPerInstruction(path));

    /// <summary>The path measured.</summary>
    public KernelPath Path => path;

    /// <summary>Whether the probe measures F32 fused multiply-adds rather than INT8 products.</summary>
    public bool FloatingPoint => floatingPoint;

    private readonly int[] _sinks = new int[Math.Max(1, threads) * ((MinChunks + Math.Max(1, threads) - 1) / Math.Max(1, threads))];

    /// <summary>Whether this CPU runs the path's instructions.</summary>
    public static bool IsSupported(KernelPath path, bool floatingPoint = false) => floatingPoint ? path switch
    {
        KernelPath.Avx512 => Avx512F.IsSupported,
        KernelPath.Avx2 or KernelPath.AvxVnni => Fma.IsSupported,
        KernelPath.Dp or KernelPath.AdvSimd => AdvSimd.IsSupported,
        _ => false,
    } : path switch
    {
        KernelPath.Avx2 => Avx2.IsSupported,
        KernelPath.Avx512 => Avx512BW.IsSupported,
        KernelPath.AvxVnni => AvxVnni.IsSupported,
        KernelPath.Dp => Dp.IsSupported,
        _ => false,
    };

    private static int FloatLanes(KernelPath path) => path switch
    {
        KernelPath.Avx512 => 16,
        KernelPath.Dp or KernelPath.AdvSimd => 4,
        _ => 8,
    };

    private static int ProductsPerInstruction(KernelPath path) => path switch
    {
        KernelPath.Avx512 => 64,
        KernelPath.Dp => 16,
        _ => 32,
    };

    /// <summary>
    /// Runs the loop on every thread (the caller's alone without a pool; give the pool's thread count to the constructor);
    /// returns a value that depends on every chain.
    /// </summary>
    public int Run(ComputePool? pool)
    {
        if (!IsSupported(path, floatingPoint))
            throw new PlatformNotSupportedException($"This CPU does not run the {path} path{(floatingPoint ? "'s fused multiply-add" : "")}.");
        if (pool != null)
            pool.For(Chunks, this);
        else
            Run(0, Chunks);
        int sink = 0;
        foreach (int value in _sinks)
            sink ^= value; // the chains' sums overflow, and may
        return sink;
    }

    /// <inheritdoc/>
    public void Run(int start, int end)
    {
        for (int c = start; c < end; c++)
            _sinks[c] = floatingPoint ? (int)(path switch
            {
                KernelPath.Avx512 => FmaLoop512(c),
                KernelPath.Avx2 or KernelPath.AvxVnni => FmaLoop256(c),
                _ => FmaLoop128(c),
            }) : path switch
            {
                KernelPath.Avx2 => Avx2Loop(c),
                KernelPath.Avx512 => Avx512Loop(c),
                KernelPath.AvxVnni => VnniLoop(c),
                _ => DpLoop(c),
            };
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static int Avx2Loop(int seed)
    {
        // Each chain multiplies its own sum (as bytes), so no two products are the same expression to share.
        Vector256<sbyte> x = Vector256.Create((sbyte)(seed | 1));
        Vector256<short> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default,
            a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < Iterations; i++)
        {
            a0 += Avx2.MultiplyAddAdjacent(a0.AsByte(), x); a1 += Avx2.MultiplyAddAdjacent(a1.AsByte(), x); a2 += Avx2.MultiplyAddAdjacent(a2.AsByte(), x);
            a3 += Avx2.MultiplyAddAdjacent(a3.AsByte(), x); a4 += Avx2.MultiplyAddAdjacent(a4.AsByte(), x); a5 += Avx2.MultiplyAddAdjacent(a5.AsByte(), x);
            a6 += Avx2.MultiplyAddAdjacent(a6.AsByte(), x); a7 += Avx2.MultiplyAddAdjacent(a7.AsByte(), x); a8 += Avx2.MultiplyAddAdjacent(a8.AsByte(), x);
            a9 += Avx2.MultiplyAddAdjacent(a9.AsByte(), x); a10 += Avx2.MultiplyAddAdjacent(a10.AsByte(), x); a11 += Avx2.MultiplyAddAdjacent(a11.AsByte(), x);
        }
        return Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static int Avx512Loop(int seed)
    {
        Vector512<sbyte> x = Vector512.Create((sbyte)(seed | 1));
        Vector512<short> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default,
            a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < Iterations; i++)
        {
            a0 += Avx512BW.MultiplyAddAdjacent(a0.AsByte(), x); a1 += Avx512BW.MultiplyAddAdjacent(a1.AsByte(), x); a2 += Avx512BW.MultiplyAddAdjacent(a2.AsByte(), x);
            a3 += Avx512BW.MultiplyAddAdjacent(a3.AsByte(), x); a4 += Avx512BW.MultiplyAddAdjacent(a4.AsByte(), x); a5 += Avx512BW.MultiplyAddAdjacent(a5.AsByte(), x);
            a6 += Avx512BW.MultiplyAddAdjacent(a6.AsByte(), x); a7 += Avx512BW.MultiplyAddAdjacent(a7.AsByte(), x); a8 += Avx512BW.MultiplyAddAdjacent(a8.AsByte(), x);
            a9 += Avx512BW.MultiplyAddAdjacent(a9.AsByte(), x); a10 += Avx512BW.MultiplyAddAdjacent(a10.AsByte(), x); a11 += Avx512BW.MultiplyAddAdjacent(a11.AsByte(), x);
        }
        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static int VnniLoop(int seed)
    {
        Vector256<byte> w = Vector256.Create((byte)(seed | 1));
        Vector256<sbyte> x = Vector256.Create((sbyte)3);
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default,
            a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < Iterations; i++)
        {
            a0 = AvxVnni.MultiplyWideningAndAdd(a0, w, x); a1 = AvxVnni.MultiplyWideningAndAdd(a1, w, x); a2 = AvxVnni.MultiplyWideningAndAdd(a2, w, x);
            a3 = AvxVnni.MultiplyWideningAndAdd(a3, w, x); a4 = AvxVnni.MultiplyWideningAndAdd(a4, w, x); a5 = AvxVnni.MultiplyWideningAndAdd(a5, w, x);
            a6 = AvxVnni.MultiplyWideningAndAdd(a6, w, x); a7 = AvxVnni.MultiplyWideningAndAdd(a7, w, x); a8 = AvxVnni.MultiplyWideningAndAdd(a8, w, x);
            a9 = AvxVnni.MultiplyWideningAndAdd(a9, w, x); a10 = AvxVnni.MultiplyWideningAndAdd(a10, w, x); a11 = AvxVnni.MultiplyWideningAndAdd(a11, w, x);
        }
        return Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static int DpLoop(int seed)
    {
        Vector128<sbyte> w = Vector128.Create((sbyte)(seed | 1));
        Vector128<sbyte> x = Vector128.Create((sbyte)3);
        Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default,
            a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < Iterations; i++)
        {
            a0 = Dp.DotProduct(a0, w, x); a1 = Dp.DotProduct(a1, w, x); a2 = Dp.DotProduct(a2, w, x);
            a3 = Dp.DotProduct(a3, w, x); a4 = Dp.DotProduct(a4, w, x); a5 = Dp.DotProduct(a5, w, x);
            a6 = Dp.DotProduct(a6, w, x); a7 = Dp.DotProduct(a7, w, x); a8 = Dp.DotProduct(a8, w, x);
            a9 = Dp.DotProduct(a9, w, x); a10 = Dp.DotProduct(a10, w, x); a11 = Dp.DotProduct(a11, w, x);
        }
        return Vector128.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static float FmaLoop512(int seed)
    {
        Vector512<float> x = Vector512.Create(0.999f), b = Vector512.Create(1e-3f * (seed + 1));
        Vector512<float> a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b, a8 = b, a9 = b, a10 = b, a11 = b;
        for (int i = 0; i < Iterations; i++)
        {
            a0 = Avx512F.FusedMultiplyAdd(a0, x, b); a1 = Avx512F.FusedMultiplyAdd(a1, x, b); a2 = Avx512F.FusedMultiplyAdd(a2, x, b);
            a3 = Avx512F.FusedMultiplyAdd(a3, x, b); a4 = Avx512F.FusedMultiplyAdd(a4, x, b); a5 = Avx512F.FusedMultiplyAdd(a5, x, b);
            a6 = Avx512F.FusedMultiplyAdd(a6, x, b); a7 = Avx512F.FusedMultiplyAdd(a7, x, b); a8 = Avx512F.FusedMultiplyAdd(a8, x, b);
            a9 = Avx512F.FusedMultiplyAdd(a9, x, b); a10 = Avx512F.FusedMultiplyAdd(a10, x, b); a11 = Avx512F.FusedMultiplyAdd(a11, x, b);
        }
        return Vector512.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static float FmaLoop256(int seed)
    {
        Vector256<float> x = Vector256.Create(0.999f), b = Vector256.Create(1e-3f * (seed + 1));
        Vector256<float> a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b, a8 = b, a9 = b, a10 = b, a11 = b;
        for (int i = 0; i < Iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, x, b); a1 = Fma.MultiplyAdd(a1, x, b); a2 = Fma.MultiplyAdd(a2, x, b);
            a3 = Fma.MultiplyAdd(a3, x, b); a4 = Fma.MultiplyAdd(a4, x, b); a5 = Fma.MultiplyAdd(a5, x, b);
            a6 = Fma.MultiplyAdd(a6, x, b); a7 = Fma.MultiplyAdd(a7, x, b); a8 = Fma.MultiplyAdd(a8, x, b);
            a9 = Fma.MultiplyAdd(a9, x, b); a10 = Fma.MultiplyAdd(a10, x, b); a11 = Fma.MultiplyAdd(a11, x, b);
        }
        return Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // measured at once, never at tier 0
    private static float FmaLoop128(int seed)
    {
        Vector128<float> x = Vector128.Create(0.999f), b = Vector128.Create(1e-3f * (seed + 1));
        Vector128<float> a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b, a8 = b, a9 = b, a10 = b, a11 = b;
        for (int i = 0; i < Iterations; i++)
        {
            a0 = AdvSimd.FusedMultiplyAdd(b, a0, x); a1 = AdvSimd.FusedMultiplyAdd(b, a1, x); a2 = AdvSimd.FusedMultiplyAdd(b, a2, x);
            a3 = AdvSimd.FusedMultiplyAdd(b, a3, x); a4 = AdvSimd.FusedMultiplyAdd(b, a4, x); a5 = AdvSimd.FusedMultiplyAdd(b, a5, x);
            a6 = AdvSimd.FusedMultiplyAdd(b, a6, x); a7 = AdvSimd.FusedMultiplyAdd(b, a7, x); a8 = AdvSimd.FusedMultiplyAdd(b, a8, x);
            a9 = AdvSimd.FusedMultiplyAdd(b, a9, x); a10 = AdvSimd.FusedMultiplyAdd(b, a10, x); a11 = AdvSimd.FusedMultiplyAdd(b, a11, x);
        }
        return Vector128.Sum(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)));
    }
}
