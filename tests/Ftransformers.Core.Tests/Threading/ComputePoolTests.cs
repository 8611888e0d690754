using Ftransformers.Kernels;
using NUnit.Framework;
using Ftransformers.Threading;

namespace Ftransformers.Tests.Threading;

[TestFixture]
public class ComputePoolTests
{
    private sealed class CountingWork(int count, Action<int>? inner = null) : IRangeWork
    {
        public readonly int[] Hits = new int[count];

        public void Run(int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                Interlocked.Increment(ref Hits[i]);
                inner?.Invoke(i);
            }
        }
    }

    [TestCase(1, 1000)]
    [TestCase(2, 1000)]
    [TestCase(4, 7)]
    [TestCase(3, 100_000)]
    public void For_VisitsEveryIndexExactlyOnce(int threads, int count)
    {
        using var pool = new ComputePool(threads, pin: false);
        for (int job = 0; job < 50; job++)
        {
            var work = new CountingWork(count);
            pool.For(count, work);
            Assert.That(work.Hits, Is.All.EqualTo(1), $"job {job}");
        }
    }

    [Test]
    public void NestedFor_RunsInlineWithoutDeadlock()
    {
        using var pool = new ComputePool(2, pin: false);
        var nested = new CountingWork(10);
        var outer = new CountingWork(8, _ => pool.For(10, new CountingWork(10)));
        pool.For(8, outer);
        Assert.That(outer.Hits, Is.All.EqualTo(1));
    }

    [Test]
    public void FailureInWork_ReachesTheCaller_AndThePoolKeepsWorking()
    {
        using var pool = new ComputePool(2, pin: false);
        var failing = new CountingWork(100, i => { if (i == 57) throw new InvalidOperationException("boom"); });
        var e = Assert.Throws<InvalidOperationException>(() => pool.For(100, failing));
        Assert.That(e!.Message, Is.EqualTo("boom"));
        var work = new CountingWork(100);
        pool.For(100, work);
        Assert.That(work.Hits, Is.All.EqualTo(1));
    }

    [Test]
    public void MinimumChunkBelowOne_StillCompletes()
    {
        using var pool = new ComputePool(4, pin: false);
        var work = new CountingWork(5);
        pool.For(5, work, minChunk: 0);
        Assert.That(work.Hits, Is.All.EqualTo(1));
    }

    [Test]
    public void ZeroThreads_IsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ComputePool(0));
    }

    // Records, per node, which threads ran its indices and how often each index ran.
    private sealed class NodeRecorder(int[] counts, Action<int, int>? inner = null) : INodeWork
    {
        public readonly int[][] Hits = [.. counts.Select(c => new int[c])];
        public readonly HashSet<int>[] Threads = [.. counts.Select(_ => new HashSet<int>())];

        public void Run(int node, int start, int end)
        {
            lock (Threads[node])
                Threads[node].Add(Environment.CurrentManagedThreadId);
            for (int i = start; i < end; i++)
            {
                Interlocked.Increment(ref Hits[node][i]);
                inner?.Invoke(node, i);
            }
        }
    }

    private static CpuTopology Nodes(params int[] threadsPerNode)
    {
        int cpu = 0;
        var cpus = threadsPerNode.Select(n => Enumerable.Range(cpu, n).Select(_ => cpu++).ToArray()).ToArray();
        return CpuTopology.Build([.. cpus.SelectMany(c => c)], c => Array.FindIndex(cpus, n => n.Contains(c)), threadsPerNode.Sum(), threadsPerNode.Length);
    }

    [TestCase(new[] { 2, 2 }, new[] { 1000, 7 })]
    [TestCase(new[] { 1, 3 }, new[] { 50, 5000 })]
    [TestCase(new[] { 1, 1, 1 }, new[] { 10, 0, 333 })]
    public void ForNodes_RunsEachNodesIndicesOnce_OnThatNodesThreadsOnly(int[] threadsPerNode, int[] counts)
    {
        using var pool = new ComputePool(Nodes(threadsPerNode), pin: false);
        for (int job = 0; job < 20; job++)
        {
            var work = new NodeRecorder(counts);
            pool.ForNodes(work, counts);
            for (int n = 0; n < counts.Length; n++)
                Assert.That(work.Hits[n], Is.All.EqualTo(1), $"job {job}, node {n}");
            // The caller is a thread of node 0; no worker serves two nodes.
            for (int a = 1; a < counts.Length; a++)
                for (int b = 0; b < a; b++)
                    Assert.That(work.Threads[a].Overlaps(work.Threads[b]), Is.False, $"job {job}: nodes {b} and {a} share a thread");
        }
    }

    [Test]
    public void BetweenStartAndJoin_TheCallersOwnPoolCallsRunInline_AndJoinFinishesTheJob()
    {
        using var pool = new ComputePool(Nodes(2, 2), pin: false);
        int[] counts = [400, 400];
        var started = new NodeRecorder(counts, (_, _) => Thread.SpinWait(50));
        pool.Start(started, counts);
        int caller = Environment.CurrentManagedThreadId;
        var meanwhile = new CountingWork(100, _ => Assert.That(Environment.CurrentManagedThreadId, Is.EqualTo(caller)));
        pool.For(100, meanwhile);
        pool.Join();
        Assert.That(meanwhile.Hits, Is.All.EqualTo(1));
        Assert.That(started.Hits, Has.All.All.EqualTo(1));
        var after = new CountingWork(1000);
        pool.For(1000, after);
        Assert.That(after.Hits, Is.All.EqualTo(1), "the pool takes jobs again");
    }

    [Test]
    public void FailureInANodeJob_ReachesJoin_AndThePoolKeepsWorking()
    {
        using var pool = new ComputePool(Nodes(1, 2), pin: false);
        int[] counts = [10, 300];
        var failing = new NodeRecorder(counts, (node, i) => { if (node == 1 && i == 123) throw new InvalidOperationException("boom"); });
        pool.Start(failing, counts);
        Assert.That(Assert.Throws<InvalidOperationException>(pool.Join)!.Message, Is.EqualTo("boom"));
        var work = new NodeRecorder(counts);
        pool.ForNodes(work, counts);
        Assert.That(work.Hits, Has.All.All.EqualTo(1));
    }

    [Test]
    public void JoinWithoutStart_IsRefused() =>
        Assert.Throws<InvalidOperationException>(new ComputePool(2, pin: false).Join);
}
