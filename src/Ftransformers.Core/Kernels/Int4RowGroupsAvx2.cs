using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// The AVX2 INT4 kernel over <see cref="Int4RowGroupLayout"/> (group size 32, rows in groups of sixteen), for one or more
/// tokens. Per quad of a block and token: four codes of the token broadcast to every lane meet the low nibbles (eight
/// rows) and the high nibbles (eight more rows) of one 32-byte load; eight vpmaddubsw per row half and block, summed
/// in int16, and one vpmaddwd leave each row's integer dot in its own lane, so scales, activation scales and mins
/// apply as vectors with no horizontal reduction. The int16 sums stay exact: 16 products of at most 15 · 127 per lane.
/// <para>
/// Per token and eight rows of a block: 4 broadcasts, 8 vpmaddubsw, 7 vpaddw, then vpmaddwd, a conversion, a multiply
/// and two FMAs. On the 2-core Zen3 dev machine, one thread with the weights in L2 cache: 2.7 ns per eight rows,
/// block and token at four tokens; 3.4 ns with groups of eight rows (whose high nibbles held other columns, so each
/// needed its own broadcast) and before the code-generation fixes in the comments below; about 5.6 ns row-major.
/// Tokens are taken four at a time, then two, then one; a token's result does not depend on how many share its pass.
/// </para>
/// </summary>
internal static class Int4RowGroupsAvx2
{
    /// <summary>Whether this CPU runs the kernel.</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Rows [<paramref name="start"/>, <paramref name="end"/>) for every token: y[t * weights.Rows + r] = row r · token t.
    /// Groups that straddle the range are computed whole and stored in part, so that ranges split anywhere.
    /// </summary>
    public static unsafe void Rows(in Int4RowGroupLayout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException("The row-group INT4 kernel needs AVX2 and FMA.");
        Int4RowGroupJob.CheckOperands(weights, start, end, x, y);
        if (start == end)
            return;
        fixed (sbyte* codes = x.AllValues)
        fixed (float* scales = x.AllScales, sums = x.AllScaledSums)
        fixed (float* ys = y)
        {
            // The float sums of a pass (low rows, high rows per token) stay in memory: the eight int16 sums of four tokens
            // fill the registers through a block, and the JIT would otherwise spill those, inside the quad loop. (Here,
            // not in the pass: a stackalloc there would keep the pass from tiered, profile-guided compilation.)
            Vector256<float>* passSums = stackalloc Vector256<float>[8];
            var job = new Int4RowGroupJob(weights, codes, scales, sums, ys, (float*)passSums, start, end);
            // Every pass over one group before the next: the group's weights (8 bytes a column) are read from memory
            // once and stay in L1 or L2 for the later passes.
            for (int g = start / Int4RowGroupLayout.RowsPerGroup; g * Int4RowGroupLayout.RowsPerGroup < end; g++)
            {
                int t = 0;
                for (; t + 4 <= x.Tokens; t += 4)
                    Pass<Four>(job, g, t);
                if (x.Tokens - t >= 2)
                {
                    Pass<Two>(job, g, t);
                    t += 2;
                }
                if (t < x.Tokens)
                    Pass<One>(job, g, t);
            }
        }
        GC.KeepAlive(weights.Owner); // the job holds raw pointers into its memory
    }

    // Tokens [t, t + TCount) against group g.
    [MethodImpl(MethodImplOptions.NoInlining)] // a compilation of its own (docs/ARCHITECTURE.md, "Kernel passes")
    private static unsafe void Pass<TCount>(Int4RowGroupJob job, int g, int t) where TCount : struct, IPassCount
    {
        nint blocks = job.Blocks;
        // Offsets of tokens 1..3's codes, as native ints computed once (else the JIT redoes each per broadcast).
        nint cols = job.Cols, cols2 = 2 * cols, cols3 = 3 * cols;
        Vector256<byte> mask = Vector256.Create((byte)0xF);
        Vector256<float>* sums = (Vector256<float>*)job.PassSums;
        for (int i = 0; i < 2 * TCount.Value; i++)
            sums[i] = Vector256<float>.Zero;
        sbyte* x = job.Codes + t * cols;
        float* xScales = job.XScales + (long)t * blocks, xSums = job.XSums + (long)t * blocks;
        for (int b = 0; b < blocks; b++)
        {
            long groupBlock = (long)g * blocks + b;
            byte* w = job.Packed + groupBlock * Int4RowGroupLayout.GroupBlockBytes;
            for (int line = 0; line < Int4RowGroupLayout.GroupBlockBytes; line += 64)
                WeightPrefetch.Ahead(w + line);
            sbyte* c = x + b * Int4Layout.BlockSize;
            Vector256<short> l0 = default, l1 = default, l2 = default, l3 = default, h0 = default, h1 = default, h2 = default, h3 = default;
            // Unrolled by hand: as a loop, the JIT spills the int16 sums at its back edge.
            Quad<TCount>(w, c, cols, cols2, cols3, mask, true, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 32, c + 4, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 64, c + 8, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 96, c + 12, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 128, c + 16, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 160, c + 20, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 192, c + 24, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Quad<TCount>(w + 224, c + 28, cols, cols2, cols3, mask, false, ref l0, ref l1, ref l2, ref l3, ref h0, ref h1, ref h2, ref h3);
            Half* at = job.Scales + groupBlock * Int4RowGroupLayout.RowsPerGroup;
            Vector256<float> lowScale = Float16.Widen8Avx2(at), highScale = Float16.Widen8Avx2(at + Int4RowGroupLayout.RowsPerHalf);
            Vector256<float> lowMin, highMin;
            if (job.Mins == null)
                (lowMin, highMin) = (lowScale * -8f, highScale * -8f);
            else
            {
                at = job.Mins + groupBlock * Int4RowGroupLayout.RowsPerGroup;
                (lowMin, highMin) = (Float16.Widen8Avx2(at), Float16.Widen8Avx2(at + Int4RowGroupLayout.RowsPerHalf));
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
        }
        for (int i = 0; i < TCount.Value; i++)
            job.StoreGroup(t + i, g, (float*)(sums + 2 * i), (float*)(sums + 2 * i + 1));
    }

    // One quad (four columns) of a block for every token of the pass: the low-nibble rows' and the high-nibble rows'
    // int16 partial dots, started (first quad) or added to.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Quad<TCount>(byte* w, sbyte* codes, nint cols, nint cols2, nint cols3, Vector256<byte> mask, bool first,
        ref Vector256<short> l0, ref Vector256<short> l1, ref Vector256<short> l2, ref Vector256<short> l3,
        ref Vector256<short> h0, ref Vector256<short> h1, ref Vector256<short> h2, ref Vector256<short> h3) where TCount : struct, IPassCount
    {
        Vector256<byte> v = Vector256.Load(w);
        Vector256<byte> low = v & mask, high = Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
        Token(low, high, codes, first, ref l0, ref h0);
        if (TCount.Value > 1)
            Token(low, high, codes + cols, first, ref l1, ref h1);
        if (TCount.Value > 2)
        {
            Token(low, high, codes + cols2, first, ref l2, ref h2);
            Token(low, high, codes + cols3, first, ref l3, ref h3);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Token(Vector256<byte> low, Vector256<byte> high, sbyte* codes, bool first, ref Vector256<short> lowDots, ref Vector256<short> highDots)
    {
        Vector256<sbyte> k = Avx2.BroadcastScalarToVector256((int*)codes).AsSByte();
        Vector256<short> l = Avx2.MultiplyAddAdjacent(low, k), h = Avx2.MultiplyAddAdjacent(high, k);
        (lowDots, highDots) = first ? (l, h) : (lowDots + l, highDots + h);
    }

    // sums[0] (low rows) and sums[1] (high rows) + dot · scale · xscale + min · xsum, per row lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Accumulate(Vector256<float>* sums, Vector256<short> lowDots, Vector256<short> highDots,
        Vector256<float> lowScale, Vector256<float> highScale, Vector256<float> lowMin, Vector256<float> highMin, float* xScale, float* xSum)
    {
        // Broadcast from memory explicitly: Vector256.Create of a loaded float costs a shuffle more.
        Vector256<float> s = Avx.BroadcastScalarToVector256(xScale), m = Avx.BroadcastScalarToVector256(xSum);
        sums[0] = Fma.MultiplyAdd(ToSingle(lowDots), lowScale * s, Fma.MultiplyAdd(lowMin, m, sums[0]));
        sums[1] = Fma.MultiplyAdd(ToSingle(highDots), highScale * s, Fma.MultiplyAdd(highMin, m, sums[1]));
    }

    // Each lane's two int16 partial dots summed to one, as float.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ToSingle(Vector256<short> dots) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(dots, Vector256<short>.One));
}
