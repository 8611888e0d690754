using Ftransformers.Threading;
using NUnit.Framework;

namespace Ftransformers.Tests.Threading;

[TestFixture]
public class CpuTopologyTests
{
    // Two OS nodes of four CPUs: 0-3 on node 0, 4-7 on node 1.
    private static int TwoSockets(int cpu) => cpu / 4;

    private static string Describe(CpuTopology topology) =>
        string.Join(" | ", topology.Nodes.Select(n => $"{n.OsNode}:{string.Join(",", n.Cpus)}"));

    [TestCase("0-3,8,10-11", new[] { 0, 1, 2, 3, 8, 10, 11 })]
    [TestCase("5\n", new[] { 5 })]
    [TestCase("", new int[0])]
    public void CpuList_IsParsedAsLinuxWritesIt(string list, int[] cpus) =>
        Assert.That(CpuTopology.ParseCpuList(list), Is.EqualTo(cpus));

    [TestCase(8, null, "0:0,1,2,3 | 1:4,5,6,7")]
    [TestCase(4, null, "0:0,1 | 1:4,5")]
    [TestCase(8, 1, "0:0,1,2,3,4,5,6,7")]
    [TestCase(8, 4, "0:0,1 | 0:2,3 | 1:4,5 | 1:6,7")]
    [TestCase(6, 3, "0:0 | 0:1,2 | 1:4,5,6")]
    [TestCase(1, null, "0:0")]
    public void Threads_AreTakenEvenlyFromTheMachinesNodes_AndCutIntoTheRequestedGroups(int threads, int? nodes, string expected) =>
        Assert.That(Describe(CpuTopology.Build([.. Enumerable.Range(0, 8)], TwoSockets, threads, nodes)), Is.EqualTo(expected));

    [Test]
    public void OnlyTheCpusTheProcessMayUse_AreTaken()
    {
        // As under `taskset -c 1,2,5`.
        Assert.That(Describe(CpuTopology.Build([1, 2, 5], TwoSockets, 3, null)), Is.EqualTo("0:1,2 | 1:5"));
    }

    [Test]
    public void MoreThreadsThanCpus_ReuseThem()
    {
        CpuTopology topology = CpuTopology.Build([0, 1], _ => 0, 3, 3);
        Assert.That(topology.ThreadCount, Is.EqualTo(3));
        Assert.That(Describe(topology), Is.EqualTo("0:0 | 0:1 | 0:0"));
    }

    [Test]
    public void MoreNodesThanThreads_OrFewerThanOne_AreRefusedNamingNumaNodes()
    {
        Assert.That(() => CpuTopology.Build([.. Enumerable.Range(0, 8)], TwoSockets, 2, 3), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("NumaNodes"));
        Assert.That(() => CpuTopology.Build([.. Enumerable.Range(0, 8)], TwoSockets, 2, 0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("NumaNodes"));
    }

    [Test]
    public void ThisMachine_HasEveryThreadOnACpuItMayUse()
    {
        CpuTopology topology = CpuTopology.Detect(Environment.ProcessorCount);
        Assert.That(topology.ThreadCount, Is.EqualTo(Environment.ProcessorCount));
        Assert.That(topology.Nodes.SelectMany(n => n.Cpus), Is.SubsetOf(CpuAffinity.AllowedCpus()));
    }
}
