using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace Ftransformers.Kernels;

/// <summary>
/// The ARM64 SDOT INT4 kernel for group size 32 (<see cref="Int4Dot"/> dispatches to it): four blocks per step for
/// every token. Two SDOTs per block leave four int32 partial sums; three pairwise adds reduce four blocks to one lane
/// each, in order, so that scales, activation scales and mins are applied as vectors once per four blocks. A block's
/// nibbles are unpacked once for all tokens.
/// </summary>
internal static class Int4Group32Dp
{
    /// <summary>Rows [start, end) for every token: y[t * weights.Rows + r] = row r · token t.</summary>
    public static unsafe void Rows(in Int4Layout weights, int start, int end, Int8Activations x, Span<float> y)
    {
        int tokens = x.Tokens, blocks = x.BlocksPerToken, cols = x.Cols, stride = cols / 2, rows = weights.Rows, full = blocks & ~3;
        Vector128<byte> mask = Vector128.Create((byte)0xF);
        Span<Vector128<float>> acc = stackalloc Vector128<float>[tokens];
        bool symmetric = weights.Symmetric;
        byte* packed = weights.Packed;
        Half* allScales = weights.Scales, allMins = weights.Mins;
        fixed (float* ys = y)
        fixed (sbyte* xv = x.AllValues)
        fixed (float* xs = x.AllScales, xsums = x.AllScaledSums)
        {
            for (int r = start; r < end; r++)
            {
                byte* w = packed + (long)r * stride;
                Half* scales = allScales + (long)r * blocks, mins = symmetric ? null : allMins + (long)r * blocks;
                acc.Clear();
                for (int b = 0; b < full; b += 4)
                {
                    Vector128<byte> v0 = Vector128.Load(w + b * 16), v1 = Vector128.Load(w + b * 16 + 16);
                    Vector128<byte> v2 = Vector128.Load(w + b * 16 + 32), v3 = Vector128.Load(w + b * 16 + 48);
                    Vector128<sbyte> l0 = (v0 & mask).AsSByte(), h0 = Vector128.ShiftRightLogical(v0, 4).AsSByte();
                    Vector128<sbyte> l1 = (v1 & mask).AsSByte(), h1 = Vector128.ShiftRightLogical(v1, 4).AsSByte();
                    Vector128<sbyte> l2 = (v2 & mask).AsSByte(), h2 = Vector128.ShiftRightLogical(v2, 4).AsSByte();
                    Vector128<sbyte> l3 = (v3 & mask).AsSByte(), h3 = Vector128.ShiftRightLogical(v3, 4).AsSByte();
                    Vector128<float> scale = Float16.Widen4AdvSimd(scales + b);
                    Vector128<float> min = symmetric ? scale * -8f : Float16.Widen4AdvSimd(mins + b);
                    for (int t = 0; t < tokens; t++)
                    {
                        sbyte* p = xv + (long)t * cols + b * 32;
                        Vector128<int> d0 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l0, Vector128.Load(p)), h0, Vector128.Load(p + 16));
                        Vector128<int> d1 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l1, Vector128.Load(p + 32)), h1, Vector128.Load(p + 48));
                        Vector128<int> d2 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l2, Vector128.Load(p + 64)), h2, Vector128.Load(p + 80));
                        Vector128<int> d3 = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, l3, Vector128.Load(p + 96)), h3, Vector128.Load(p + 112));
                        Vector128<int> dots = AdvSimd.Arm64.AddPairwise(AdvSimd.Arm64.AddPairwise(d0, d1), AdvSimd.Arm64.AddPairwise(d2, d3));
                        long at = (long)t * blocks + b;
                        acc[t] = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(dots), scale * Vector128.Load(xs + at),
                            Vector128.FusedMultiplyAdd(min, Vector128.Load(xsums + at), acc[t]));
                    }
                }
                for (int t = 0; t < tokens; t++)
                {
                    float sum = Vector128.Sum(acc[t]);
                    for (int b = full; b < blocks; b++)
                    {
                        Vector128<byte> v = Vector128.Load(w + b * 16);
                        sbyte* p = xv + (long)t * cols + b * 32;
                        int dot = Vector128.Sum(Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, (v & mask).AsSByte(), Vector128.Load(p)), Vector128.ShiftRightLogical(v, 4).AsSByte(), Vector128.Load(p + 16)));
                        long at = (long)t * blocks + b;
                        float scale = (float)scales[b];
                        sum += scale * xs[at] * dot + (symmetric ? -8f * scale : (float)mins[b]) * xsums[at];
                    }
                    ys[(long)t * rows + r] = sum;
                }
            }
        }
    }
}
