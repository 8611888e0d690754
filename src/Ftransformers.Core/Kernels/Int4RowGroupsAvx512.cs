using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// The AVX-512 (F + BW) INT4 kernel over <see cref="Int4RowGroupLayout"/>: <see cref="Int4RowGroupsAvx2"/>'s scheme
/// on 512-bit registers, two row groups at once. The low half of each register holds a quad of group g, the high half
/// the same quad of group g + h (h: half the range's groups), so one four-code broadcast meets 32 rows and each
/// vpmaddubsw does twice the work; with 32 registers, eight tokens share each unpacked weight load. A group left over (an odd count in the range)
/// goes to the AVX2 kernel. Both apply the same integer and float operations to each row in the same order, so a row's
/// result has the same bits whichever kernel computes it and however many tokens share its pass.
/// <para>
/// .NET 10 exposes 512-bit vpdpbusd only through AVX10.1, which the AVX-512 VNNI CPUs of today do not report; and
/// vpmaddubsw's int16 pair sums cannot overflow here (two products of at most 15 · 127), so VNNI would save only the
/// vpaddw that follows each multiply, which runs on another port.
/// </para>
/// </summary>
internal static class Int4RowGroupsAvx512
{
    private const int GroupBlockBytes = Int4RowGroupLayout.GroupBlockBytes;
    private const int RowsPerGroup = Int4RowGroupLayout.RowsPerGroup;

    /// <summary>Whether this CPU runs the kernel.</summary>
    public static bool IsSupported => Avx512BW.IsSupported && Int4RowGroupsAvx2.IsSupported;

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) for every token: y[t * weights.Rows + r] = row r · token t.
    /// Groups that straddle the range are computed whole and stored in part, so that ranges split anywhere.
    /// </summary>
    public static unsafe void Rows(in Int4RowGroupLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException("The AVX-512 row-group INT4 kernel needs AVX-512 F and BW.");
        Int4RowGroupJob.CheckOperands(weights, start, end, x, y);
        if (start == end)
            return;
        // The two groups of a register are half the range's groups apart: two sequential streams of weights (and of
        // scales), which the prefetchers follow at full bandwidth, where neighbouring groups break both every two groups.
        int first = start / RowsPerGroup, endGroup = (end + RowsPerGroup - 1) / RowsPerGroup, half = (endGroup - first) / 2;
        fixed (sbyte* codes = x.AllValues)
        fixed (float* scales = x.AllScales, sums = x.AllScaledSums)
        fixed (float* ys = y)
        {
            // The float sums of a pass stay in memory (as in the AVX2 kernel): registers hold the int16 sums.
            Vector512<float>* passSums = stackalloc Vector512<float>[2 * Eight.Value];
            var job = new Int4RowGroupJob(weights, codes, scales, sums, ys, (float*)passSums, start, end);
            for (int g = first; g < first + half; g++)
            {
                int t = 0;
                for (; t + 8 <= x.Tokens; t += 8)
                    Pass<Eight>(job, g, half, t);
                if (x.Tokens - t >= 4)
                {
                    Pass<Four>(job, g, half, t);
                    t += 4;
                }
                if (x.Tokens - t >= 2)
                {
                    Pass<Two>(job, g, half, t);
                    t += 2;
                }
                if (t < x.Tokens)
                    Pass<One>(job, g, half, t);
            }
        }
        int left = first + 2 * half;
        if (left < endGroup)
            Int4RowGroupsAvx2.Rows(weights, Math.Max(start, left * RowsPerGroup), end, x, y);
        GC.KeepAlive(weights.Owner); // the job holds raw pointers into its memory
    }

    // Tokens [t, t + TCount) against groups g and g + step.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void Pass<TCount>(Int4RowGroupJob job, int g, int step, int t) where TCount : struct, IPassCount
    {
        nint blocks = job.Blocks;
        nint groupStride = step * blocks * GroupBlockBytes; // from a block of group g to the same block of group g + step
        nint cols = job.Cols;
        Vector512<byte> mask = Vector512.Create((byte)0xF);
        Vector512<float>* sums = (Vector512<float>*)job.PassSums;
        for (int i = 0; i < 2 * TCount.Value; i++)
            sums[i] = Vector512<float>.Zero;
        sbyte* x = job.Codes + t * cols;
        float* xScales = job.XScales + (long)t * blocks, xSums = job.XSums + (long)t * blocks;
        for (int b = 0; b < blocks; b++)
        {
            long groupBlock = (long)g * blocks + b;
            byte* w = job.Packed + groupBlock * GroupBlockBytes;
            for (int line = 0; line < GroupBlockBytes; line += 64)
            {
                WeightPrefetch.Ahead(w + line);
                WeightPrefetch.Ahead(w + groupStride + line);
            }
            sbyte* c = x + b * Int4Layout.BlockSize;
            // Separate locals, not a struct of sixteen (which the JIT keeps on the stack); unrolled by hand: as a loop,
            // the JIT spills the int16 sums at its back edge.
            Vector512<short> l0 = default, l1 = default, l2 = default, l3 = default, l4 = default, l5 = default, l6 = default, l7 = default;
            Vector512<short> h0 = default, h1 = default, h2 = default, h3 = default, h4 = default, h5 = default, h6 = default, h7 = default;
            Quad<TCount>(w, groupStride, c, cols, mask, true, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 32, groupStride, c + 4, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 64, groupStride, c + 8, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 96, groupStride, c + 12, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 128, groupStride, c + 16, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 160, groupStride, c + 20, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 192, groupStride, c + 24, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            Quad<TCount>(w + 224, groupStride, c + 28, cols, mask, false, ref l0, ref l1, ref l2, ref l3, ref l4, ref l5, ref l6, ref l7, ref h0, ref h1, ref h2, ref h3, ref h4, ref h5, ref h6, ref h7);
            // Lanes 0..7: group g's rows; lanes 8..15: group g + step's.
            nint nextScales = step * blocks * RowsPerGroup;
            Half* at = job.Scales + groupBlock * RowsPerGroup;
            Vector512<float> lowScale = Widen(at, nextScales), highScale = Widen(at + Int4RowGroupLayout.RowsPerHalf, nextScales);
            Vector512<float> lowMin, highMin;
            if (job.Mins == null)
                (lowMin, highMin) = (lowScale * -8f, highScale * -8f);
            else
            {
                at = job.Mins + groupBlock * RowsPerGroup;
                (lowMin, highMin) = (Widen(at, nextScales), Widen(at + Int4RowGroupLayout.RowsPerHalf, nextScales));
            }
            float* xs = xScales + b, xm = xSums + b;
            Accumulate(sums, l0, h0, lowScale, highScale, lowMin, highMin, xs, xm);
            if (TCount.Value > 1)
                Accumulate(sums + 2, l1, h1, lowScale, highScale, lowMin, highMin, xs + blocks, xm + blocks);
            if (TCount.Value > 2)
            {
                Accumulate(sums + 4, l2, h2, lowScale, highScale, lowMin, highMin, xs + 2 * blocks, xm + 2 * blocks);
                Accumulate(sums + 6, l3, h3, lowScale, highScale, lowMin, highMin, xs + 3 * blocks, xm + 3 * blocks);
            }
            if (TCount.Value > 4)
            {
                Accumulate(sums + 8, l4, h4, lowScale, highScale, lowMin, highMin, xs + 4 * blocks, xm + 4 * blocks);
                Accumulate(sums + 10, l5, h5, lowScale, highScale, lowMin, highMin, xs + 5 * blocks, xm + 5 * blocks);
                Accumulate(sums + 12, l6, h6, lowScale, highScale, lowMin, highMin, xs + 6 * blocks, xm + 6 * blocks);
                Accumulate(sums + 14, l7, h7, lowScale, highScale, lowMin, highMin, xs + 7 * blocks, xm + 7 * blocks);
            }
        }
        for (int i = 0; i < TCount.Value; i++)
        {
            float* low = (float*)(sums + 2 * i), high = (float*)(sums + 2 * i + 1);
            job.StoreGroup(t + i, g, low, high);
            job.StoreGroup(t + i, g + step, low + Int4RowGroupLayout.RowsPerHalf, high + Int4RowGroupLayout.RowsPerHalf);
        }
    }

    // One quad (four columns) of a block for every token of the pass: each token's low-nibble rows' (l) and high-nibble
    // rows' (h) int16 partial dots, started (first quad) or added to.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Quad<TCount>(byte* w, nint groupStride, sbyte* codes, nint cols, Vector512<byte> mask, bool first,
        ref Vector512<short> l0, ref Vector512<short> l1, ref Vector512<short> l2, ref Vector512<short> l3,
        ref Vector512<short> l4, ref Vector512<short> l5, ref Vector512<short> l6, ref Vector512<short> l7,
        ref Vector512<short> h0, ref Vector512<short> h1, ref Vector512<short> h2, ref Vector512<short> h3,
        ref Vector512<short> h4, ref Vector512<short> h5, ref Vector512<short> h6, ref Vector512<short> h7)
        where TCount : struct, IPassCount
    {
        Vector512<byte> v = Vector512.Create(Vector256.Load(w), Vector256.Load(w + groupStride));
        Vector512<byte> low = v & mask, high = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
        Token(low, high, codes, first, ref l0, ref h0);
        if (TCount.Value > 1)
            Token(low, high, codes + cols, first, ref l1, ref h1);
        if (TCount.Value > 2)
        {
            Token(low, high, codes + 2 * cols, first, ref l2, ref h2);
            Token(low, high, codes + 3 * cols, first, ref l3, ref h3);
        }
        if (TCount.Value > 4)
        {
            Token(low, high, codes + 4 * cols, first, ref l4, ref h4);
            Token(low, high, codes + 5 * cols, first, ref l5, ref h5);
            Token(low, high, codes + 6 * cols, first, ref l6, ref h6);
            Token(low, high, codes + 7 * cols, first, ref l7, ref h7);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Token(Vector512<byte> low, Vector512<byte> high, sbyte* codes, bool first, ref Vector512<short> lowDots, ref Vector512<short> highDots)
    {
        Vector512<sbyte> k = Avx512F.BroadcastScalarToVector512(Vector128.CreateScalarUnsafe(*(int*)codes)).AsSByte();
        Vector512<short> l = Avx512BW.MultiplyAddAdjacent(low, k), h = Avx512BW.MultiplyAddAdjacent(high, k);
        (lowDots, highDots) = first ? (l, h) : (lowDots + l, highDots + h);
    }

    // sums[0] (low rows) and sums[1] (high rows) + dot · scale · xscale + min · xsum, per row lane: the AVX2 kernel's
    // operations, lane for lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Accumulate(Vector512<float>* sums, Vector512<short> lowDots, Vector512<short> highDots,
        Vector512<float> lowScale, Vector512<float> highScale, Vector512<float> lowMin, Vector512<float> highMin, float* xScale, float* xSum)
    {
        Vector512<float> s = Vector512.Create(*xScale), m = Vector512.Create(*xSum);
        sums[0] = Avx512F.FusedMultiplyAdd(ToSingle(lowDots), lowScale * s, Avx512F.FusedMultiplyAdd(lowMin, m, sums[0]));
        sums[1] = Avx512F.FusedMultiplyAdd(ToSingle(highDots), highScale * s, Avx512F.FusedMultiplyAdd(highMin, m, sums[1]));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ToSingle(Vector512<short> dots) =>
        Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(dots, Vector512<short>.One));

    // Eight F16 values of group g at at, and eight of the paired group at at + next, as one vector.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Widen(Half* at, nint next) =>
        Vector512.Create(Float16.Widen8Avx2(at), Float16.Widen8Avx2(at + next));
}
