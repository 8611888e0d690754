using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Ftransformers.Kernels;

/// <summary>
/// Software prefetch of streamed weights a fixed distance ahead of the loads, for the x86 kernels. The hardware
/// prefetcher alone left DRAM idle while several tokens' arithmetic ran: on the 2-core Zen3 dev machine, an INT8
/// row loop over 927 MB took 47 ms for 4 tokens without it and 37 ms with it (1 token: 34 ms and 31 ms, the
/// machine's read bandwidth). ARM64 has no prefetch intrinsic in .NET; its hardware prefetchers stream rows well.
/// </summary>
internal static class WeightPrefetch
{
    /// <summary>Bytes ahead of the current load: the best of 512, 2048 and 4096 in that measurement.</summary>
    public const int Distance = 2048;

    /// <summary>Starts loading the cache line <see cref="Distance"/> bytes after <paramref name="address"/> (never faults).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Ahead(void* address)
    {
        if (Sse.IsSupported)
            Sse.Prefetch0((byte*)address + Distance);
    }
}
