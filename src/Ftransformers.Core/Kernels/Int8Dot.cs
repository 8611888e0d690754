using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Dot product of two INT8 vectors with INT32 accumulation (the W8A8 inner loop). Values must lie in
/// [-127, 127], as the quantizers produce: the AVX2 path's sign trick cannot represent -(-128).
/// </summary>
public static class Int8Dot
{
    /// <summary>The path <see cref="Dot"/> takes on this CPU.</summary>
    public static KernelPath ActivePath { get; } =
        Avx2.IsSupported ? KernelPath.Avx2
        : Dp.IsSupported ? KernelPath.Dp
        : AdvSimd.IsSupported ? KernelPath.AdvSimd
        : Vector128.IsHardwareAccelerated ? KernelPath.Vector128
        : KernelPath.Scalar;

    /// <summary>Σ a[i] * b[i] in INT32.</summary>
    public static int Dot(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"Lengths differ: {a.Length} and {b.Length}.");
        return DotOn(ActivePath, a, b);
    }

    /// <summary>The path <see cref="Rows"/> takes on this CPU: AVX-VNNI where there is one (<see cref="Int8RowsAvxVnni"/>), else <see cref="ActivePath"/>.</summary>
    public static KernelPath RowsPath { get; } = Int8RowsAvxVnni.IsSupported ? KernelPath.AvxVnni : ActivePath;

    /// <summary>
    /// W8A8 rows [<paramref name="start"/>, <paramref name="end"/>) for every token of <paramref name="x"/> (quantized per
    /// token): y[t * weights.Rows + r] = scale_r * xscale_t * (row r · codes of token t).
    /// </summary>
    public static void Rows(in Int8Layout weights, int start, int end, Int8Activations x, Span<float> y) => RowsOn(RowsPath, in weights, start, end, x, y);

    internal static unsafe void RowsOn(KernelPath path, in Int8Layout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, rows = weights.Rows, cols = weights.Cols;
        if (weights.BlockSize != cols)
            throw new ArgumentException($"These weights have a scale per block of {weights.BlockSize} values: Int8BlockRows computes them.", nameof(weights));
        if (x.Cols != cols || x.BlockSize != cols)
            throw new ArgumentException($"Activations must be {cols} values per token with one scale each, got {x.Cols} in blocks of {x.BlockSize}.");
        if (y.Length < (tokens - 1) * rows + end)
            throw new ArgumentException($"The output needs {tokens} x {rows} values.", nameof(y));
        if ((uint)start > (uint)end || end > rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {rows} rows.");
        if (path == KernelPath.AvxVnni)
        {
            Int8RowsAvxVnni.Rows(weights, start, end, x, y);
            return;
        }
        Span<int> dots = stackalloc int[4];
        for (int r = start; r < end; r++)
        {
            ReadOnlySpan<sbyte> row = weights.Row(r);
            float scale = weights.Scale(r);
            int t = 0;
            // Several tokens share each load of the row (and on AVX2 its absolute values); a last single token takes Dot.
            if (path is KernelPath.Avx2 or KernelPath.Dp)
            {
                for (; t + 2 <= tokens; t += 4)
                {
                    int n = Math.Min(4, tokens - t);
                    if (path == KernelPath.Avx2)
                        TokensAvx2(row, x, t, n, dots);
                    else
                        TokensDp(row, x, t, n, dots);
                    for (int k = 0; k < n; k++)
                        y[(t + k) * rows + r] = scale * x.Scales(t + k)[0] * dots[k];
                }
            }
            for (; t < tokens; t++)
                y[t * rows + r] = scale * x.Scales(t)[0] * DotOn(path, row, x.Values(t));
        }
        GC.KeepAlive(weights.Owner);
    }

    // dots[k] += tail · token k's codes from the same column (the columns after the vector loop).
    private static unsafe void AddTails(ReadOnlySpan<sbyte> tail, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3, Span<int> dots)
    {
        dots[0] += DotScalar(tail, new ReadOnlySpan<sbyte>(x0, tail.Length), 0);
        dots[1] += DotScalar(tail, new ReadOnlySpan<sbyte>(x1, tail.Length), 0);
        dots[2] += DotScalar(tail, new ReadOnlySpan<sbyte>(x2, tail.Length), 0);
        dots[3] += DotScalar(tail, new ReadOnlySpan<sbyte>(x3, tail.Length), 0);
    }

    // Row · tokens [t, t + n) for 2 <= n <= 4 (AVX2).
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void TokensAvx2(ReadOnlySpan<sbyte> row, Int8Activations x, int t, int n, Span<int> dots)
    {
        int cols = row.Length;
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<int> a0 = Vector256<int>.Zero, a1 = Vector256<int>.Zero, a2 = Vector256<int>.Zero, a3 = Vector256<int>.Zero;
        fixed (sbyte* w = row)
        fixed (sbyte* codes = x.AllValues)
        {
            sbyte* x0 = codes + (long)t * cols, x1 = x0 + cols, x2 = n > 2 ? x1 + cols : x1, x3 = n > 3 ? x2 + cols : x2;
            int i = 0;
            for (; i + 32 <= cols; i += 32)
            {
                if ((i & 63) == 0)
                    WeightPrefetch.Ahead(w + i);
                Vector256<sbyte> wv = Vector256.Load(w + i);
                Vector256<byte> magnitude = Avx2.Abs(wv);
                a0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Load(x0 + i), wv)), ones);
                a1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Load(x1 + i), wv)), ones);
                if (n > 2)
                    a2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Load(x2 + i), wv)), ones);
                if (n > 3)
                    a3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Load(x3 + i), wv)), ones);
            }
            (dots[0], dots[1], dots[2], dots[3]) = (Vector256.Sum(a0), Vector256.Sum(a1), Vector256.Sum(a2), Vector256.Sum(a3));
            AddTails(row[i..], x0 + i, x1 + i, x2 + i, x3 + i, dots);
        }
    }

    // Row · tokens [t, t + n) for 2 <= n <= 4 (ARM64 SDOT).
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void TokensDp(ReadOnlySpan<sbyte> row, Int8Activations x, int t, int n, Span<int> dots)
    {
        int cols = row.Length;
        Vector128<int> a0 = Vector128<int>.Zero, a1 = Vector128<int>.Zero, a2 = Vector128<int>.Zero, a3 = Vector128<int>.Zero;
        fixed (sbyte* w = row)
        fixed (sbyte* codes = x.AllValues)
        {
            sbyte* x0 = codes + (long)t * cols, x1 = x0 + cols, x2 = n > 2 ? x1 + cols : x1, x3 = n > 3 ? x2 + cols : x2;
            int i = 0;
            for (; i + 16 <= cols; i += 16)
            {
                Vector128<sbyte> wv = Vector128.Load(w + i);
                a0 = Dp.DotProduct(a0, wv, Vector128.Load(x0 + i));
                a1 = Dp.DotProduct(a1, wv, Vector128.Load(x1 + i));
                if (n > 2)
                    a2 = Dp.DotProduct(a2, wv, Vector128.Load(x2 + i));
                if (n > 3)
                    a3 = Dp.DotProduct(a3, wv, Vector128.Load(x3 + i));
            }
            (dots[0], dots[1], dots[2], dots[3]) = (Vector128.Sum(a0), Vector128.Sum(a1), Vector128.Sum(a2), Vector128.Sum(a3));
            AddTails(row[i..], x0 + i, x1 + i, x2 + i, x3 + i, dots);
        }
    }

    /// <summary>Σ a[i] * b[i] on a chosen path (tests; the path must be supported).</summary>
    internal static int DotOn(KernelPath path, ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b) => path switch
    {
        KernelPath.Avx2 => DotAvx2(a, b),
        KernelPath.Dp => DotDp(a, b),
        KernelPath.AdvSimd => DotAdvSimd(a, b),
        KernelPath.Vector128 => DotVector128(a, b),
        _ => DotScalar(a, b, 0),
    };

    private static int DotScalar(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b, int start)
    {
        int sum = 0;
        for (int i = start; i < a.Length; i++)
            sum += a[i] * b[i];
        return sum;
    }

    private static int DotVector128(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        ref sbyte pa = ref MemoryMarshal.GetReference(a);
        ref sbyte pb = ref MemoryMarshal.GetReference(b);
        Vector128<int> acc = Vector128<int>.Zero;
        int i = 0;
        for (; i + 16 <= a.Length; i += 16)
        {
            (Vector128<short> a0, Vector128<short> a1) = Vector128.Widen(Vector128.LoadUnsafe(ref pa, (nuint)i));
            (Vector128<short> b0, Vector128<short> b1) = Vector128.Widen(Vector128.LoadUnsafe(ref pb, (nuint)i));
            // |a*b| <= 127*127 fits a short; widen the products before adding.
            (Vector128<int> p0, Vector128<int> p1) = Vector128.Widen(a0 * b0);
            (Vector128<int> p2, Vector128<int> p3) = Vector128.Widen(a1 * b1);
            acc += (p0 + p1) + (p2 + p3);
        }
        return Vector128.Sum(acc) + DotScalar(a, b, i);
    }

    private static unsafe int DotAvx2(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        ref sbyte pa = ref MemoryMarshal.GetReference(a);
        ref sbyte pb = ref MemoryMarshal.GetReference(b);
        Vector256<int> acc0 = Vector256<int>.Zero, acc1 = Vector256<int>.Zero;
        Vector256<short> ones = Vector256.Create((short)1);
        int i = 0;
        for (; i + 64 <= a.Length; i += 64)
        {
            // a is the weight row in W8A8 products; a prefetch of an address never faults, even if the GC moves a.
            WeightPrefetch.Ahead(Unsafe.AsPointer(ref Unsafe.Add(ref pa, i)));
            acc0 += Avx2MultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), ones);
            acc1 += Avx2MultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)(i + 32)), Vector256.LoadUnsafe(ref pb, (nuint)(i + 32)), ones);
        }
        for (; i + 32 <= a.Length; i += 32)
            acc0 += Avx2MultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), ones);
        return Vector256.Sum(acc0 + acc1) + DotScalar(a, b, i);
    }

    // vpmaddubsw multiplies unsigned by signed bytes: move a's sign onto b, then |a| * (±b) = a * b.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Avx2MultiplyAdd(Vector256<sbyte> a, Vector256<sbyte> b, Vector256<short> ones) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(a), Avx2.Sign(b, a)), ones);

    private static int DotAdvSimd(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        ref sbyte pa = ref MemoryMarshal.GetReference(a);
        ref sbyte pb = ref MemoryMarshal.GetReference(b);
        Vector128<int> acc = Vector128<int>.Zero;
        int i = 0;
        for (; i + 16 <= a.Length; i += 16)
        {
            Vector128<sbyte> va = Vector128.LoadUnsafe(ref pa, (nuint)i), vb = Vector128.LoadUnsafe(ref pb, (nuint)i);
            acc = AdvSimd.AddPairwiseWideningAndAdd(acc, AdvSimd.MultiplyWideningLower(va.GetLower(), vb.GetLower()));
            acc = AdvSimd.AddPairwiseWideningAndAdd(acc, AdvSimd.MultiplyWideningUpper(va, vb));
        }
        return Vector128.Sum(acc) + DotScalar(a, b, i);
    }

    private static int DotDp(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        ref sbyte pa = ref MemoryMarshal.GetReference(a);
        ref sbyte pb = ref MemoryMarshal.GetReference(b);
        Vector128<int> acc0 = Vector128<int>.Zero, acc1 = Vector128<int>.Zero;
        int i = 0;
        for (; i + 32 <= a.Length; i += 32)
        {
            acc0 = Dp.DotProduct(acc0, Vector128.LoadUnsafe(ref pa, (nuint)i), Vector128.LoadUnsafe(ref pb, (nuint)i));
            acc1 = Dp.DotProduct(acc1, Vector128.LoadUnsafe(ref pa, (nuint)(i + 16)), Vector128.LoadUnsafe(ref pb, (nuint)(i + 16)));
        }
        for (; i + 16 <= a.Length; i += 16)
            acc0 = Dp.DotProduct(acc0, Vector128.LoadUnsafe(ref pa, (nuint)i), Vector128.LoadUnsafe(ref pb, (nuint)i));
        return Vector128.Sum(acc0 + acc1) + DotScalar(a, b, i);
    }
}
