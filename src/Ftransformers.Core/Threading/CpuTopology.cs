namespace Ftransformers.Threading;

/// <summary>A group of CPUs that computes from one memory node's weights.</summary>
/// <param name="Index">The group's index, from 0.</param>
/// <param name="OsNode">The operating system's NUMA node its memory is placed on.</param>
/// <param name="Cpus">The CPUs its threads are pinned to.</param>
public sealed record CpuNode(int Index, int OsNode, IReadOnlyList<int> Cpus);

/// <summary>
/// Where compute threads run: the NUMA nodes the OS reports (Linux: <c>/sys/devices/system/node</c>), intersected with
/// the CPUs the process may use (<c>taskset</c>, cgroup cpusets) and cut to the thread count. More nodes than the
/// machine has splits the CPUs into that many groups that act as nodes (sub-NUMA clusters, tests on small machines);
/// fewer merges them (1 turns NUMA placement off).
/// </summary>
public sealed class CpuTopology
{
    private CpuTopology(IReadOnlyList<CpuNode> nodes) => Nodes = nodes;

    /// <summary>The node groups, each with at least one CPU.</summary>
    public IReadOnlyList<CpuNode> Nodes { get; }

    /// <summary>Compute threads: one per CPU of every node.</summary>
    public int ThreadCount => Nodes.Sum(n => n.Cpus.Count);

    /// <summary>The machine's node count among the CPUs the process may use.</summary>
    public static int MachineNodeCount() => Group(CpuAffinity.AllowedCpus()).Count;

    /// <summary>
    /// <paramref name="threads"/> CPUs taken evenly from the machine's nodes, in <paramref name="nodes"/> groups (null:
    /// the machine's node count, at most one per thread). More threads than allowed CPUs reuse CPUs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is below 1, or there are more nodes than threads.</exception>
    public static CpuTopology Detect(int threads, int? nodes = null) => Build(CpuAffinity.AllowedCpus(), OsNodeOfCpu(), threads, nodes);

    /// <summary>As <see cref="Detect"/>, for a given set of allowed CPUs and their OS nodes (tests).</summary>
    internal static CpuTopology Build(IReadOnlyList<int> allowed, Func<int, int> osNodeOf, int threads, int? nodes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (nodes is < 1)
            throw new ArgumentOutOfRangeException(nameof(nodes), nodes, "NumaNodes must be at least 1.");
        List<(int OsNode, int[] Cpus)> machine = Group(allowed, osNodeOf);
        int groups = nodes ?? Math.Min(machine.Count, threads);
        if (groups > threads)
            throw new ArgumentOutOfRangeException(nameof(nodes), nodes, $"NumaNodes ({groups}) cannot exceed the compute threads ({threads}): every node needs a thread.");

        // Threads taken from each machine node in proportion to its CPUs, so every node's memory is read.
        int total = machine.Sum(n => n.Cpus.Length);
        var taken = new List<(int Cpu, int OsNode)>();
        for (int i = 0; i < machine.Count; i++)
        {
            int share = (int)((long)threads * (machine.Take(i + 1).Sum(n => n.Cpus.Length)) / total) - (int)((long)threads * machine.Take(i).Sum(n => n.Cpus.Length) / total);
            for (int j = 0; j < share; j++)
                taken.Add((machine[i].Cpus[j % machine[i].Cpus.Length], machine[i].OsNode));
        }

        // Cut the taken CPUs, in node order, into the requested number of contiguous groups of near-equal size.
        var result = new CpuNode[groups];
        for (int g = 0; g < groups; g++)
        {
            int start = (int)((long)taken.Count * g / groups), end = (int)((long)taken.Count * (g + 1) / groups);
            var part = taken.GetRange(start, end - start);
            result[g] = new CpuNode(g, part[0].OsNode, [.. part.Select(c => c.Cpu)]);
        }
        return new CpuTopology(result);
    }

    /// <summary>One node of <paramref name="threads"/> CPUs, 0, 1, ... (wrapping at the processor count): no NUMA placement.</summary>
    public static CpuTopology Flat(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        return new CpuTopology([new CpuNode(0, 0, [.. Enumerable.Range(0, threads).Select(i => i % Environment.ProcessorCount)])]);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        string.Join("; ", Nodes.Select(n => $"node {n.Index} (OS node {n.OsNode}): {n.Cpus.Count} CPUs {Ranges(n.Cpus)}"));

    private static string Ranges(IReadOnlyList<int> cpus) => cpus.Count <= 8 ? string.Join(",", cpus) : $"{string.Join(",", cpus.Take(4))},...,{cpus[^1]}";

    private static List<(int OsNode, int[] Cpus)> Group(IReadOnlyList<int> allowed, Func<int, int>? osNodeOf = null)
    {
        osNodeOf ??= OsNodeOfCpu();
        return [.. allowed.GroupBy(osNodeOf).OrderBy(g => g.Key).Select(g => (g.Key, g.Order().ToArray()))];
    }

    // Linux lists each node's CPUs in /sys/devices/system/node/nodeN/cpulist ("0-3,8-11"); elsewhere, one node.
    private static Func<int, int> OsNodeOfCpu()
    {
        var nodeOf = new Dictionary<int, int>();
        const string root = "/sys/devices/system/node";
        if (OperatingSystem.IsLinux() && Directory.Exists(root))
        {
            foreach (string dir in Directory.EnumerateDirectories(root, "node*"))
            {
                if (!int.TryParse(Path.GetFileName(dir)["node".Length..], out int node) || !File.Exists(Path.Combine(dir, "cpulist")))
                    continue;
                foreach (int cpu in ParseCpuList(File.ReadAllText(Path.Combine(dir, "cpulist"))))
                    nodeOf[cpu] = node;
            }
        }
        return cpu => nodeOf.GetValueOrDefault(cpu);
    }

    /// <summary>Parses a Linux CPU list such as <c>0-3,8,10-11</c>.</summary>
    internal static IEnumerable<int> ParseCpuList(string list)
    {
        foreach (string part in list.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] bounds = part.Split('-');
            int first = int.Parse(bounds[0], System.Globalization.CultureInfo.InvariantCulture);
            int last = bounds.Length > 1 ? int.Parse(bounds[1], System.Globalization.CultureInfo.InvariantCulture) : first;
            for (int cpu = first; cpu <= last; cpu++)
                yield return cpu;
        }
    }
}
