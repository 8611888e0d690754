using Ftransformers.Kernels;
using NUnit.Framework;
using Ftransformers.Threading;

namespace Ftransformers.Tests.Kernels;

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
}
