using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ftransformers.Kernels;
using Ftransformers.Threading;

namespace Ftransformers.Diagnostics;

/// <summary>One NUMA node group of the baseline: its CPUs and the read bandwidth its threads reach on its own memory.</summary>
/// <param name="Index">The group's index, as the compute pool numbers it.</param>
/// <param name="OsNode">The operating system's node.</param>
/// <param name="Cpus">The CPUs its threads run on.</param>
/// <param name="ReadGBps">Median read bandwidth of this node's threads on this node's memory, GB/s (10^9 bytes).</param>
public sealed record NodeBaseline(int Index, int OsNode, IReadOnlyList<int> Cpus, double ReadGBps);

/// <summary>
/// What the kernels are judged against on this machine, measured once (<c>ftransformers sysinfo</c>) and cached: read
/// bandwidth per NUMA node and of all nodes at once, the peak multiply-add rates of the integer and float paths the
/// kernels take, the CPUs and their nodes, and the page size.
/// </summary>
public sealed record MachineBaseline
{
    /// <summary>The CPU model.</summary>
    public required string Cpu { get; init; }

    /// <summary>The process architecture (X64, Arm64).</summary>
    public required string Architecture { get; init; }

    /// <summary>Logical CPUs the machine reports.</summary>
    public required int LogicalCores { get; init; }

    /// <summary>Compute threads the measurement ran on (the pool's).</summary>
    public required int Threads { get; init; }

    /// <summary>The OS memory page size, bytes.</summary>
    public required int PageSize { get; init; }

    /// <summary>The node groups and their own read bandwidth.</summary>
    public required IReadOnlyList<NodeBaseline> Nodes { get; init; }

    /// <summary>Median read bandwidth with every node reading its own memory at once, GB/s.</summary>
    public required double ReadGBps { get; init; }

    /// <summary>The path the INT8 kernels take (W8A8 products, INT4 experts after unpacking).</summary>
    public required KernelPath IntegerPath { get; init; }

    /// <summary>Peak INT8 multiply-adds per second on <see cref="IntegerPath"/> over all threads, 10^9; null where the path has no probe.</summary>
    public double? IntegerGigaMacs { get; init; }

    /// <summary>The vector path of F32 fused multiply-adds.</summary>
    public required KernelPath FloatPath { get; init; }

    /// <summary>Peak F32 multiply-adds per second on <see cref="FloatPath"/> over all threads, 10^9; null where the CPU has no FMA probe.</summary>
    public double? FloatGigaMacs { get; init; }

    /// <summary>When it was measured.</summary>
    public required DateTimeOffset Measured { get; init; }

    /// <summary>The machine and thread layout it was measured on; a cached baseline with another is measured again.</summary>
    public required string Identity { get; init; }

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Where <see cref="LoadOrMeasure"/> caches by default: the user's local application data, <c>ftransformers/sysinfo.json</c>.</summary>
    public static string DefaultCachePath => Path.Combine(
        Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify), "ftransformers", "sysinfo.json");

    /// <summary>The identity of this machine with a compute pool of <paramref name="topology"/> (one thread without one).</summary>
    public static string IdentityOf(CpuTopology? topology) =>
        $"{CpuModel()}|{RuntimeInformation.ProcessArchitecture}|{Environment.ProcessorCount}|{topology?.ToString() ?? "1 thread"}";

    /// <summary>
    /// The cached baseline at <paramref name="cachePath"/> when it was measured on this machine with this layout, else a
    /// new measurement (announced to <paramref name="measuring"/>), written there. <paramref name="refresh"/> measures regardless.
    /// </summary>
    public static MachineBaseline LoadOrMeasure(ComputePool? pool, string cachePath, bool refresh = false, long bytesPerNode = MemoryReadProbe.DefaultBytesPerNode,
        Action? measuring = null)
    {
        if (!refresh && TryLoad(cachePath, IdentityOf(pool?.Topology)) is { } cached)
            return cached;
        measuring?.Invoke();
        MachineBaseline measured = Measure(pool, bytesPerNode);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(cachePath))!);
        File.WriteAllText(cachePath, JsonSerializer.Serialize(measured, Json));
        return measured;
    }

    /// <summary>The baseline cached at <paramref name="cachePath"/> if its identity is <paramref name="identity"/>; null otherwise (missing, other machine, unreadable).</summary>
    public static MachineBaseline? TryLoad(string cachePath, string identity)
    {
        try
        {
            MachineBaseline? cached = File.Exists(cachePath) ? JsonSerializer.Deserialize<MachineBaseline>(File.ReadAllText(cachePath), Json) : null;
            return cached?.Identity == identity ? cached : null;
        }
        catch (Exception e) when (e is JsonException or IOException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Measures on <paramref name="pool"/>'s threads (the caller's alone without one): the median of five runs of each probe.</summary>
    public static MachineBaseline Measure(ComputePool? pool, long bytesPerNode = MemoryReadProbe.DefaultBytesPerNode)
    {
        const int runs = 5;
        using var read = new MemoryReadProbe(pool, bytesPerNode);
        double Bandwidth(int? node) => Median(runs, () => read.Read(node)) is var seconds ? read.BytesRead(node) / seconds / 1e9 : 0;
        IReadOnlyList<CpuNode> nodes = pool?.Topology.Nodes ?? [new CpuNode(0, 0, [0])];
        var perNode = nodes.Select(n => new NodeBaseline(n.Index, n.OsNode, n.Cpus, Bandwidth(n.Index))).ToArray();
        double all = nodes.Count == 1 ? perNode[0].ReadGBps : Bandwidth(null);

        KernelPath integer = Int8Dot.RowsPath;
        KernelPath floating = Avx512F.IsSupported ? KernelPath.Avx512 : Fma.IsSupported ? KernelPath.Avx2 : AdvSimd.IsSupported ? KernelPath.AdvSimd : KernelPath.Scalar;
        return new MachineBaseline
        {
            Cpu = CpuModel(),
            Architecture = RuntimeInformation.ProcessArchitecture.ToString(),
            LogicalCores = Environment.ProcessorCount,
            Threads = pool?.ThreadCount ?? 1,
            PageSize = Environment.SystemPageSize,
            Nodes = perNode,
            ReadGBps = all,
            IntegerPath = integer,
            IntegerGigaMacs = Peak(pool, integer, floatingPoint: false),
            FloatPath = floating,
            FloatGigaMacs = Peak(pool, floating, floatingPoint: true),
            Measured = DateTimeOffset.UtcNow,
            Identity = IdentityOf(pool?.Topology),
        };

        static double? Peak(ComputePool? pool, KernelPath path, bool floatingPoint)
        {
            if (!ComputePeakProbe.IsSupported(path, floatingPoint))
                return null;
            var probe = new ComputePeakProbe(path, floatingPoint, pool?.ThreadCount ?? 1);
            return probe.MultiplyAdds / Median(runs, () => probe.Run(pool)) / 1e9;
        }
    }

    // Median seconds of `runs` calls, after one unmeasured call.
    private static double Median(int runs, Func<object> call)
    {
        call();
        var seconds = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            long start = Stopwatch.GetTimestamp();
            call();
            seconds[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(seconds);
        return seconds[runs / 2];
    }

    /// <summary>The CPU model from <c>/proc/cpuinfo</c> (Linux), else the architecture.</summary>
    public static string CpuModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
                return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
                    ?? RuntimeInformation.ProcessArchitecture.ToString();
        }
        catch (IOException)
        {
        }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    /// <summary>Writes the baseline as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>A Markdown table of the baseline.</summary>
    public string ToMarkdown()
    {
        var md = new System.Text.StringBuilder();
        var c = System.Globalization.CultureInfo.InvariantCulture;
        md.AppendLine("| | |").AppendLine("| --- | --- |");
        md.AppendLine(c, $"| CPU | {Cpu} ({Architecture}), {LogicalCores} logical cores |");
        md.AppendLine(c, $"| compute threads | {Threads} on {Nodes.Count} node(s) |");
        md.AppendLine(c, $"| page size | {PageSize} bytes |");
        foreach (NodeBaseline n in Nodes)
            md.AppendLine(c, $"| node {n.Index} (OS node {n.OsNode}) | {n.Cpus.Count} CPUs ({string.Join(",", n.Cpus)}); read {n.ReadGBps:F1} GB/s |");
        md.AppendLine(c, $"| read bandwidth, all nodes | {ReadGBps:F1} GB/s |");
        md.AppendLine(c, $"| INT8 peak ({IntegerPath}) | {(IntegerGigaMacs is { } i ? $"{i:F1} G multiply-adds/s" : "no probe for this path")} |");
        md.AppendLine(c, $"| F32 peak ({FloatPath} FMA) | {(FloatGigaMacs is { } f ? $"{f:F1} G multiply-adds/s" : "no probe for this path")} |");
        md.AppendLine(c, $"| measured | {Measured:yyyy-MM-dd HH:mm:ss} UTC |");
        return md.ToString();
    }
}
