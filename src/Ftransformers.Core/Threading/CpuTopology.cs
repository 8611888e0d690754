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

    /// <summary>
    /// <paramref name="threads"/> CPUs taken evenly from the machine's nodes, in <paramref name="nodes"/> groups (null:
    /// the machine's node count, at most one per thread). More threads than allowed CPUs reuse CPUs.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is below 1, or there are more nodes than threads.</exception>
    public static CpuTopology Detect(int threads, int? nodes = null) => Build(CpuAffinity.AllowedCpus(), OsNodeOfCpu(), threads, nodes);

    /// <summary>The topology of a compute pool of <paramref name="threads"/> threads (see <see cref="Detect"/>); null for one thread, which computes on the caller alone.</summary>
    public static CpuTopology? ForComputeThreads(int threads, int? nodes) => threads > 1 ? Detect(threads, nodes) : null;

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

        // Threads taken from each machine node in proportion to its CPUs (earlier nodes first when it does not divide),
        // so every node's memory is read.
        int total = machine.Sum(n => n.Cpus.Length), before = 0;
        var taken = new List<(int OsNode, int[] Cpus)>();
        foreach (var (osNode, cpus) in machine)
        {
            int share = Share(threads, before + cpus.Length, total) - Share(threads, before, total);
            before += cpus.Length;
            if (share > 0)
                taken.Add((osNode, [.. Enumerable.Range(0, share).Select(j => cpus[j % cpus.Length])]));
        }

        var result = new List<CpuNode>();
        if (groups < taken.Count)
        {
            // Fewer groups than nodes: neighbouring nodes merge, each group placed on its first CPU's node.
            var flat = taken.SelectMany(n => n.Cpus.Select(cpu => (n.OsNode, Cpu: cpu))).ToList();
            for (int g = 0; g < groups; g++)
            {
                var part = flat.GetRange(flat.Count * g / groups, flat.Count * (g + 1) / groups - flat.Count * g / groups);
                result.Add(new CpuNode(g, part[0].OsNode, [.. part.Select(c => c.Cpu)]));
            }
            return new CpuTopology(result);
        }
        // As many groups as nodes or more: each node is cut into groups in proportion to its threads, never straddling two.
        int assigned = 0, threadsBefore = 0;
        foreach (var (osNode, cpus) in taken)
        {
            int parts = Share(groups - taken.Count, threadsBefore + cpus.Length, threads) - Share(groups - taken.Count, threadsBefore, threads) + 1;
            parts = Math.Min(parts, cpus.Length);
            threadsBefore += cpus.Length;
            for (int g = 0; g < parts; g++)
                result.Add(new CpuNode(assigned++, osNode, cpus[(cpus.Length * g / parts)..(cpus.Length * (g + 1) / parts)]));
        }
        if (result.Count != groups)
            throw new ArgumentOutOfRangeException(nameof(nodes), nodes, $"{groups} NUMA nodes cannot be cut from {threads} threads on {taken.Count} machine nodes.");
        return new CpuTopology(result);
    }

    // The first `part` of `whole` items' share of `count`, rounded up: cumulative, so shares add up to count.
    private static int Share(int count, int part, int whole) => (int)(((long)count * part + whole - 1) / whole);

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

    private static List<(int OsNode, int[] Cpus)> Group(IReadOnlyList<int> allowed, Func<int, int> osNodeOf)
    {
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
