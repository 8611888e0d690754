using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Ftransformers.Quantization;

namespace Ftransformers.Kernels;

/// <summary>
/// The AVX2 INT4 kernel for group size 32 (<see cref="Int4Dot"/> dispatches to it): eight blocks per step, tokens two
/// at a time. A 32-byte load holds blocks b and b + 1 of a row: its low nibbles are the first halves of both blocks and
/// its high nibbles the second halves, which meet the activations' paired layout. Interleaves and adds reduce the eight
/// blocks' products to one int32 lane per block (in the order 0 2 4 6 1 3 5 7, put right by one permute), so that
/// scales, activation scales and mins are applied as vectors once per eight blocks instead of per block. The int16
/// sums stay exact: at most 16 products of 15 * 127.
/// </summary>
internal static class Int4Group32Avx2
{
    /// <summary>Rows [start, end) for every token: y[t * weights.Rows + r] = row r · token t.</summary>
    public static unsafe void Rows(Int4Weights weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken, cols = x.Cols, stride = cols / 2, rows = weights.Rows;
        bool symmetric = weights.Format.Symmetric;
        fixed (byte* packed = weights.Packed)
        fixed (Half* allScales = weights.Scales, allMins = weights.Mins)
        fixed (float* ys = y)
        fixed (sbyte* xp = x.AllPairedValues, xv = x.AllValues)
        fixed (float* xs = x.AllScales, xsums = x.AllScaledSums)
        {
            for (int r = start; r < end; r++)
            {
                var row = new Group32Row(packed + (long)r * stride, allScales + (long)r * blocks, symmetric ? null : allMins + (long)r * blocks, blocks);
                for (int t = 0; t < tokens; t += 2)
                {
                    var first = new Group32Token(xp, xv, xs, xsums, cols, blocks, t);
                    if (t + 1 < tokens)
                    {
                        (float a, float b) = TwoTokens(row, first, new Group32Token(xp, xv, xs, xsums, cols, blocks, t + 1));
                        ys[(long)t * rows + r] = a;
                        ys[(long)(t + 1) * rows + r] = b;
                    }
                    else
                    {
                        ys[(long)t * rows + r] = OneToken(row, first);
                    }
                }
            }
        }
    }

    // A row's packed weights and F16 scales and mins (null when symmetric: the min is then −8 · scale).
    private readonly unsafe struct Group32Row(byte* packed, Half* scales, Half* mins, int blocks)
    {
        public readonly byte* Packed = packed;
        public readonly Half* Scales = scales, Mins = mins;
        public readonly int Blocks = blocks;

        // Eight blocks' scales and mins from b, widened to F32.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public (Vector256<float> Scale, Vector256<float> Min) Eight(int b)
        {
            Vector256<float> scale = Float16.Widen8Avx2(Scales + b);
            return (scale, Mins == null ? scale * -8f : Float16.Widen8Avx2(Mins + b));
        }

        public float Scale(int b) => (float)Scales[b];

        public float Min(int b) => Mins == null ? -8f * (float)Scales[b] : (float)Mins[b];
    }

    // Token t's paired and plain codes, block scales and scaled block sums, within those of all tokens.
    private readonly unsafe struct Group32Token(sbyte* paired, sbyte* codes, float* scales, float* scaledSums, int cols, int blocks, int t)
    {
        public readonly sbyte* Paired = paired + (long)t * cols, Codes = codes + (long)t * cols;
        public readonly float* Scales = scales + (long)t * blocks, ScaledSums = scaledSums + (long)t * blocks;

        // acc + dots * scale * xscale + min * xsum, for eight blocks from b.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Accumulate(Vector256<float> acc, Vector256<int> dots, Vector256<float> scale, Vector256<float> min, int b) =>
            Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dots), scale * Vector256.Load(Scales + b), Vector256.FusedMultiplyAdd(min, Vector256.Load(ScaledSums + b), acc));

        // One block of the row's tail (fewer than eight left), in the plain layout.
        public float TailBlock(Group32Row row, int b)
        {
            Vector128<byte> bytes = Vector128.Load(row.Packed + b * 16);
            Vector256<byte> q = Vector256.Create(bytes, Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0xF);
            int dot = Vector256.Sum(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(Codes + b * 32)), Vector256.Create((short)1)));
            return row.Scale(b) * Scales[b] * dot + row.Min(b) * ScaledSums[b];
        }
    }

    // Eight blocks of a row unpacked: block pairs' low nibbles (L) and high nibbles (H).
    private readonly unsafe struct EightBlocks
    {
        private readonly Vector256<byte> _l0, _h0, _l1, _h1, _l2, _h2, _l3, _h3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public EightBlocks(byte* w)
        {
            Vector256<byte> mask = Vector256.Create((byte)0xF);
            WeightPrefetch.Ahead(w);
            WeightPrefetch.Ahead(w + 64);
            Vector256<byte> v0 = Vector256.Load(w), v1 = Vector256.Load(w + 32), v2 = Vector256.Load(w + 64), v3 = Vector256.Load(w + 96);
            (_l0, _h0) = (v0 & mask, Vector256.ShiftRightLogical(v0.AsUInt16(), 4).AsByte() & mask);
            (_l1, _h1) = (v1 & mask, Vector256.ShiftRightLogical(v1.AsUInt16(), 4).AsByte() & mask);
            (_l2, _h2) = (v2 & mask, Vector256.ShiftRightLogical(v2.AsUInt16(), 4).AsByte() & mask);
            (_l3, _h3) = (v3 & mask, Vector256.ShiftRightLogical(v3.AsUInt16(), 4).AsByte() & mask);
        }

        // The eight blocks' integer dots with paired codes, one lane per block.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Dots(sbyte* p)
        {
            Vector256<short> p0 = Avx2.MultiplyAddAdjacent(_l0, Vector256.Load(p)) + Avx2.MultiplyAddAdjacent(_h0, Vector256.Load(p + 32));
            Vector256<short> p1 = Avx2.MultiplyAddAdjacent(_l1, Vector256.Load(p + 64)) + Avx2.MultiplyAddAdjacent(_h1, Vector256.Load(p + 96));
            Vector256<short> p2 = Avx2.MultiplyAddAdjacent(_l2, Vector256.Load(p + 128)) + Avx2.MultiplyAddAdjacent(_h2, Vector256.Load(p + 160));
            Vector256<short> p3 = Avx2.MultiplyAddAdjacent(_l3, Vector256.Load(p + 192)) + Avx2.MultiplyAddAdjacent(_h3, Vector256.Load(p + 224));
            // Interleave and add (cheaper than vphaddw): each half of p0 holds 8 partial sums of one block (b in the
            // low half, b + 1 in the high half), of p1 of the blocks two further on, and so on. Two rounds leave two
            // adjacent partials per block, [b b b+2 b+2 b+4 b+4 b+6 b+6 | b+1 b+1 ...], which vpmaddwd adds in int32.
            Vector256<short> p01 = Avx2.UnpackLow(p0.AsInt32(), p1.AsInt32()).AsInt16() + Avx2.UnpackHigh(p0.AsInt32(), p1.AsInt32()).AsInt16();
            Vector256<short> p23 = Avx2.UnpackLow(p2.AsInt32(), p3.AsInt32()).AsInt16() + Avx2.UnpackHigh(p2.AsInt32(), p3.AsInt32()).AsInt16();
            Vector256<short> sums = Avx2.UnpackLow(p01.AsInt64(), p23.AsInt64()).AsInt16() + Avx2.UnpackHigh(p01.AsInt64(), p23.AsInt64()).AsInt16();
            return Avx2.PermuteVar8x32(Avx2.MultiplyAddAdjacent(sums, Vector256.Create((short)1)), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7));
        }
    }

    // One row against one token.
    private static unsafe float OneToken(Group32Row row, Group32Token x)
    {
        int full = row.Blocks & ~7;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int b = 0; b < full; b += 8)
        {
            var blocks = new EightBlocks(row.Packed + b * 16);
            (Vector256<float> scale, Vector256<float> min) = row.Eight(b);
            acc = x.Accumulate(acc, blocks.Dots(x.Paired + b * 32), scale, min, b);
        }
        float sum = Vector256.Sum(acc);
        for (int b = full; b < row.Blocks; b++)
            sum += x.TailBlock(row, b);
        return sum;
    }

    // One row against two tokens: the unpacked weights serve both.
    private static unsafe (float, float) TwoTokens(Group32Row row, Group32Token x0, Group32Token x1)
    {
        int full = row.Blocks & ~7;
        Vector256<float> a0 = Vector256<float>.Zero, a1 = Vector256<float>.Zero;
        for (int b = 0; b < full; b += 8)
        {
            // Both tokens' integer dots first: the unpacked blocks (eight registers) are then dead before the float
            // stage needs registers, so that no accumulator is spilled to the stack.
            var blocks = new EightBlocks(row.Packed + b * 16);
            Vector256<int> d0 = blocks.Dots(x0.Paired + b * 32), d1 = blocks.Dots(x1.Paired + b * 32);
            (Vector256<float> scale, Vector256<float> min) = row.Eight(b);
            a0 = x0.Accumulate(a0, d0, scale, min, b);
            a1 = x1.Accumulate(a1, d1, scale, min, b);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1);
        for (int b = full; b < row.Blocks; b++)
        {
            s0 += x0.TailBlock(row, b);
            s1 += x1.TailBlock(row, b);
        }
        return (s0, s1);
    }
}
