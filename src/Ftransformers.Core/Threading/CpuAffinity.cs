using System.Runtime.InteropServices;

namespace Ftransformers.Threading;

/// <summary>The CPUs a thread may run on, through Linux <c>sched_getaffinity</c>/<c>sched_setaffinity</c>; elsewhere every CPU.</summary>
internal static partial class CpuAffinity
{
    // Room for 4096 CPUs: more than any server the engine targets (the kernel rejects a mask shorter than its own).
    private const int MaskWords = 64;

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, [In] ulong[] mask);

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nint size, [Out] ulong[] mask);

    /// <summary>Pins the calling thread to one CPU; false where the OS does not allow it.</summary>
    public static bool TryPinCurrentThread(int cpu)
    {
        if (!OperatingSystem.IsLinux() || cpu < 0 || cpu >= MaskWords * 64)
            return false;
        var mask = new ulong[MaskWords];
        mask[cpu / 64] = 1UL << (cpu % 64);
        try
        {
            return SchedSetAffinity(0, mask.Length * sizeof(ulong), mask) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// The CPUs the process may run on (<c>taskset</c>, cgroup cpusets), in ascending order: read from the calling
    /// thread's mask, which a process's threads inherit. Every CPU where the OS does not say.
    /// </summary>
    public static int[] AllowedCpus()
    {
        if (OperatingSystem.IsLinux())
        {
            var mask = new ulong[MaskWords];
            try
            {
                if (SchedGetAffinity(0, mask.Length * sizeof(ulong), mask) == 0)
                {
                    var cpus = new List<int>();
                    for (int cpu = 0; cpu < MaskWords * 64; cpu++)
                        if ((mask[cpu / 64] >> (cpu % 64) & 1) != 0)
                            cpus.Add(cpu);
                    if (cpus.Count > 0)
                        return [.. cpus];
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
            }
        }
        return [.. Enumerable.Range(0, Environment.ProcessorCount)];
    }
}
