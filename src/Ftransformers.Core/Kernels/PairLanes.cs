using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Ftransformers.Kernels;

/// <summary>
/// How the 512-bit K-quant passes (<see cref="Q4KRows"/>, <see cref="Q6KRows"/>) spread a block's eight per-32 scales
/// over their int32 lanes: register k (0..3) holds two runs of 32 values, 2k and 2k + 1, and its lane i takes run
/// 2k + i / 8. Each P is a <c>vpermps</c> index over a vector whose first eight lanes are the eight scales.
/// </summary>
internal readonly struct PairLanes
{
    public readonly Vector512<int> P0, P1, P2, P3;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public PairLanes()
    {
        Vector512<int> two = Vector512.Create(2);
        P0 = Vector512.Create(Vector256<int>.Zero, Vector256.Create(1));
        P1 = P0 + two;
        P2 = P1 + two;
        P3 = P2 + two;
    }
}
