using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Ftransformers.Quantization;

namespace Ftransformers.Kernels;

/// <summary>
/// The AVX2 INT4 kernel over <see cref="Int4RowGroups"/> (group size 32, rows in groups of eight), for one or more
/// tokens. Per block and token: four codes of the token broadcast to every lane meet four packed bytes of each of eight
/// rows; eight vpmaddubsw (low and high nibbles of four quads) summed in int16 and one vpmaddwd leave the block's
/// integer dot of each row in its own lane, so scales, activation scales and mins apply as vectors with no horizontal
/// reduction. The int16 sums stay exact: 16 products of at most 15 · 127 per lane.
/// <para>
/// About 20 vector operations per token for eight rows of a block; a row-major layout needs about 37, most of them
/// per-row reductions, which dominated once several tokens share an expert (on the 2-core Zen3 dev machine, 0.40 ns
/// per row-block and token at four tokens against 0.70). Tokens are taken four at a time, then two, then one; a
/// token's result does not depend on how many share its pass.
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
    public static unsafe void Rows(Int4RowGroups weights, int start, int end, Int8Activations x, Span<float> y)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException("The row-group INT4 kernel needs AVX2 and FMA.");
        if (x.Cols != weights.Cols || x.BlockSize != Int4Weights.BlockSize)
            throw new ArgumentException($"Activations must be {weights.Cols} values per token in blocks of {Int4Weights.BlockSize}, got {x.Cols} in blocks of {x.BlockSize}.", nameof(x));
        if ((uint)start > (uint)end || end > weights.Rows)
            throw new ArgumentOutOfRangeException(nameof(end), $"Rows [{start}, {end}) are not within the {weights.Rows} rows.");
        if (y.Length < (x.Tokens - 1) * weights.Rows + end)
            throw new ArgumentException($"The output needs {x.Tokens} x {weights.Rows} values.", nameof(y));
        if (start == end)
            return;
        fixed (sbyte* codes = x.AllValues)
        fixed (float* scales = x.AllScales, sums = x.AllScaledSums)
        fixed (float* ys = y)
        {
            var job = new Job(weights, codes, scales, sums, ys, start, end);
            // Every pass over one group before the next: the group's weights (16 bytes a column) are read from memory
            // once and stay in L1 or L2 for the later passes.
            for (int g = start / Int4RowGroups.RowsPerGroup; g * Int4RowGroups.RowsPerGroup < end; g++)
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
        GC.KeepAlive(weights); // the job holds raw pointers into its arrays
    }

    // One call's operands: the pinned weights, every token's codes, block scales and scaled sums, and the output rows.
    private readonly unsafe struct Job(Int4RowGroups weights, sbyte* codes, float* scales, float* sums, float* y, int start, int end)
    {
        public readonly byte* Packed = (byte*)Unsafe.AsPointer(ref weights.Packed[0]);
        public readonly Half* Scales = (Half*)Unsafe.AsPointer(ref weights.Scales[0]);
        public readonly Half* Mins = weights.Mins is { } mins ? (Half*)Unsafe.AsPointer(ref mins[0]) : null;
        public readonly sbyte* Codes = codes;
        public readonly float* XScales = scales, XSums = sums, Y = y;
        public readonly int Rows = weights.Rows, Cols = weights.Cols, Blocks = weights.Blocks, Start = start, End = end;
    }

    /// <summary>How many tokens one pass serves, as a type: each count compiles to its own loop, with no tests per token.</summary>
    private interface ITokenCount
    {
        static abstract int Value { get; }
    }

    private readonly struct One : ITokenCount
    {
        public static int Value => 1;
    }

    private readonly struct Two : ITokenCount
    {
        public static int Value => 2;
    }

    private readonly struct Four : ITokenCount
    {
        public static int Value => 4;
    }

    // Tokens [t, t + TCount) against group g.
    private static unsafe void Pass<TCount>(Job job, int g, int t) where TCount : struct, ITokenCount
    {
        int blocks = job.Blocks, cols = job.Cols;
        Vector256<byte> mask = Vector256.Create((byte)0xF);
        Vector256<short> ones = Vector256.Create((short)1);
        sbyte* x0 = job.Codes + (long)t * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        float* s0 = job.XScales + (long)t * blocks, s1 = s0 + blocks, s2 = s1 + blocks, s3 = s2 + blocks;
        float* m0 = job.XSums + (long)t * blocks, m1 = m0 + blocks, m2 = m1 + blocks, m3 = m2 + blocks;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero, a2 = Vector256<float>.Zero, a3 = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            long groupBlock = (long)g * blocks + b;
            byte* w = job.Packed + groupBlock * 128;
            WeightPrefetch.Ahead(w);
            WeightPrefetch.Ahead(w + 64);
            Vector256<short> d0 = Vector256<short>.Zero, d1 = Vector256<short>.Zero, d2 = Vector256<short>.Zero, d3 = Vector256<short>.Zero;
            int c = b * 32;
            for (int q = 0; q < 4; q++, c += 4)
            {
                Vector256<byte> v = Vector256.Load(w + q * 32);
                Vector256<byte> low = v & mask, high = Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
                d0 += Quad(low, high, x0 + c);
                if (TCount.Value > 1)
                    d1 += Quad(low, high, x1 + c);
                if (TCount.Value > 2)
                {
                    d2 += Quad(low, high, x2 + c);
                    d3 += Quad(low, high, x3 + c);
                }
            }
            Vector256<float> scale = Float16.Widen8Avx2(job.Scales + groupBlock * 8);
            Vector256<float> min = job.Mins == null ? scale * -8f : Float16.Widen8Avx2(job.Mins + groupBlock * 8);
            a0 = Accumulate(a0, d0, ones, scale, min, s0[b], m0[b]);
            if (TCount.Value > 1)
                a1 = Accumulate(a1, d1, ones, scale, min, s1[b], m1[b]);
            if (TCount.Value > 2)
            {
                a2 = Accumulate(a2, d2, ones, scale, min, s2[b], m2[b]);
                a3 = Accumulate(a3, d3, ones, scale, min, s3[b], m3[b]);
            }
        }
        Store(job, g, t, a0);
        if (TCount.Value > 1)
            Store(job, g, t + 1, a1);
        if (TCount.Value > 2)
        {
            Store(job, g, t + 2, a2);
            Store(job, g, t + 3, a3);
        }
    }

    // Eight rows' int16 partial dots of one quad: low nibbles against codes c..c+3, high nibbles against c+16..c+19.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<short> Quad(Vector256<byte> low, Vector256<byte> high, sbyte* codes) =>
        Avx2.MultiplyAddAdjacent(low, Vector256.Create(*(int*)codes).AsSByte()) + Avx2.MultiplyAddAdjacent(high, Vector256.Create(*(int*)(codes + 16)).AsSByte());

    // acc + dot · scale · xscale + min · xsum, per row lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate(Vector256<float> acc, Vector256<short> dots, Vector256<short> ones, Vector256<float> scale, Vector256<float> min, float xScale, float xSum) =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(dots, ones)), scale * Vector256.Create(xScale), Fma.MultiplyAdd(min, Vector256.Create(xSum), acc));

    // Token t's results of group g, the rows within the job's range.
    private static unsafe void Store(Job job, int g, int t, Vector256<float> rows)
    {
        int first = g * Int4RowGroups.RowsPerGroup;
        float* y = job.Y + (long)t * job.Rows + first;
        if (first >= job.Start && first + Int4RowGroups.RowsPerGroup <= job.End)
        {
            rows.Store(y);
            return;
        }
        for (int i = Math.Max(0, job.Start - first); i < Int4RowGroups.RowsPerGroup && first + i < job.End; i++)
            y[i] = rows.GetElement(i);
    }
}
