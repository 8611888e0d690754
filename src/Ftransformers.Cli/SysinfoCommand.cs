using System.CommandLine;
using Ftransformers.Diagnostics;
using Ftransformers.Threading;

namespace Ftransformers.Cli;

/// <summary>
/// <c>ftransformers sysinfo</c>: measures what the kernels are judged against (read bandwidth per NUMA node and of
/// all nodes, peak INT8 and F32 multiply-add rates of the paths in use, CPUs, nodes, page size) once, and caches it
/// for profiles; later runs print the cached baseline unless <c>--refresh</c>.
/// </summary>
internal static class SysinfoCommand
{
    public static Command Create()
    {
        var threads = new Option<int?>("--cpuinfer") { Description = "Threads to measure with (default: every core), as serve's --cpuinfer." };
        var nodes = new Option<int?>("--numa-nodes") { Description = "NUMA node groups, as serve's --numa-nodes (default: the machine's)." };
        var refresh = new Option<bool>("--refresh") { Description = "Measure again even when a baseline for this machine is cached." };
        var cache = new Option<string?>("--cache") { Description = $"The cache file (default: {MachineBaseline.DefaultCachePath})." };
        var json = new Option<bool>("--json") { Description = "Print the baseline as JSON instead of a table." };
        var size = new Option<int>("--read-mib") { Description = "MiB read per node by the bandwidth probe (beyond the last-level cache).", DefaultValueFactory = _ => (int)(MemoryReadProbe.DefaultBytesPerNode >> 20) };
        var command = new Command("sysinfo", "Measure (once, then cached) the machine's read bandwidth per NUMA node and compute peaks, which profiles judge the engine against.")
        {
            threads, nodes, refresh, cache, json, size,
        };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            int count = parse.GetValue(threads) ?? Environment.ProcessorCount;
            if (count < 1)
                throw new ArgumentException($"--cpuinfer must be at least 1 (got {count}).");
            if (parse.GetValue(size) < 1)
                throw new ArgumentException($"--read-mib must be at least 1 (got {parse.GetValue(size)}).");
            string path = parse.GetValue(cache) ?? MachineBaseline.DefaultCachePath;
            MachineBaseline baseline = await Task.Run(() =>
            {
                using ComputePool? pool = CpuTopology.ForComputeThreads(count, parse.GetValue(nodes)) is { } topology ? new ComputePool(topology) : null;
                return MachineBaseline.LoadOrMeasure(pool, path, parse.GetValue(refresh), (long)parse.GetValue(size) << 20,
                    () => parse.InvocationConfiguration.Error.WriteLine($"Measuring read bandwidth and compute peaks on {pool?.ThreadCount ?? 1} thread(s)..."));
            }, ct);
            TextWriter output = parse.InvocationConfiguration.Output;
            if (typeof(MachineBaseline).Assembly.GetCustomAttributes(typeof(System.Diagnostics.DebuggableAttribute), false) is [System.Diagnostics.DebuggableAttribute { IsJITOptimizerDisabled: true }])
                await parse.InvocationConfiguration.Error.WriteLineAsync("warning: this is a Debug build, whose kernels run unoptimized: the peaks are understated. Run a Release build (dotnet run -c Release) and --refresh.");
            await output.WriteLineAsync(parse.GetValue(json) ? baseline.ToJson() : baseline.ToMarkdown());
            await parse.InvocationConfiguration.Error.WriteLineAsync($"cached in {path}");
            return 0;
        }));
        return command;
    }
}
