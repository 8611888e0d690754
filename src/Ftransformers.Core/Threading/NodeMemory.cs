using System.Runtime.InteropServices;

namespace Ftransformers.Threading;

/// <summary>
/// Native memory placed on NUMA nodes: page-aligned blocks whose byte ranges are bound to a node with Linux
/// <c>mbind</c> (preferred policy, so a full node spills instead of failing) before anything touches them. Where the
/// OS does not allow it the binding is skipped, and the node's own threads writing the range first places it.
/// </summary>
internal static unsafe partial class NodeMemory
{
    public const int PageSize = 4096;
    private const int MpolPreferred = 1;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, nint address, nuint length, int mode, ulong* nodeMask, nuint maxNode, uint flags);

    /// <summary>Page-aligned memory of at least <paramref name="bytes"/> bytes (whole pages); free it with <see cref="Free"/>.</summary>
    public static byte* Allocate(long bytes) => (byte*)NativeMemory.AlignedAlloc((nuint)RoundUp(Math.Max(1, bytes)), PageSize);

    public static void Free(byte* block) => NativeMemory.AlignedFree(block);

    /// <summary>Asks the OS to place the whole pages inside [start, start + bytes) on <paramref name="osNode"/>; false where it cannot.</summary>
    public static bool TryBind(byte* start, long bytes, int osNode)
    {
        long first = RoundUp((long)start), last = ((long)start + bytes) / PageSize * PageSize;
        if (last <= first || osNode is < 0 or >= 63 || !OperatingSystem.IsLinux())
            return false;
        long number = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 237,
            Architecture.Arm64 => 235,
            _ => -1,
        };
        if (number < 0)
            return false;
        ulong mask = 1UL << osNode;
        try
        {
            return Syscall(number, (nint)first, (nuint)(last - first), MpolPreferred, &mask, 64, 0) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    private static long RoundUp(long value) => (value + PageSize - 1) / PageSize * PageSize;
}
