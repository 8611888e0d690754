using Ftransformers.Generation;
using Ftransformers.Backends.Cpu;
using Ftransformers.Memory;
using Ftransformers.Serving;
using Ftransformers.Tokenization;
using NUnit.Framework;

namespace Ftransformers.Tests.Serving;

[TestFixture]
public class BatchSchedulerTests
{
    private const int PageSize = 4;
    private KvCachePool _pool = null!;
    private CpuKvCache _kv = null!;
    private long _ids;

    [TearDown]
    public void Destroy() => _kv.Dispose();

    private BatchScheduler Scheduler(int pages, int chunk = 16, int maxRunning = 8, bool prefixCache = false)
    {
        _pool = new KvCachePool(PageSize, pages);
        _kv = new CpuKvCache(layers: 1, rowWidth: 2, _pool.CapacityTokens, KvCacheDType.F32);
        return new BatchScheduler(_pool, _kv, prefixCache ? new PrefixCache(_pool) : null, chunk, maxRunning);
    }

    private Sequence Add(BatchScheduler scheduler, int promptLength, int firstToken = 10)
    {
        var request = new GenerationRequest { PromptTokens = Enumerable.Range(firstToken, promptLength).ToArray(), MaxTokens = 1000, IgnoreEos = true };
        var sequence = new Sequence(++_ids, request.PromptTokens, request, ByteTokenizer.Instance, new HashSet<int>(), maxLength: 1 << 20);
        scheduler.Add(sequence);
        return sequence;
    }

    // What the engine does after the forward pass: computed counts move, and sampling entries gain a token.
    private static List<(Sequence Sequence, int Count)> Step(BatchScheduler scheduler)
    {
        var step = scheduler.Schedule().Select(e => (e.Sequence, e.Count, e.Samples)).ToList();
        foreach (var (sequence, count, samples) in step)
        {
            sequence.ComputedTokens += count;
            if (samples)
                sequence.Tokens.Add(7);
        }
        return step.Select(e => (e.Sequence, e.Count)).ToList();
    }

    [Test]
    public void EachStep_CarriesEveryDecodeToken_AndPromptChunksUpToTheBudget()
    {
        BatchScheduler scheduler = Scheduler(pages: 64, chunk: 16);
        Sequence a = Add(scheduler, 10), b = Add(scheduler, 50);

        Assert.That(Step(scheduler), Is.EqualTo(new[] { (a, 10), (b, 6) }));
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (a, 1), (b, 16) }), "a decodes while b's prompt continues");
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (a, 1), (b, 16) }));
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (a, 1), (b, 12) }));
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (a, 1), (b, 1) }));
        Assert.That(b.Tokens, Has.Count.EqualTo(52));
    }

    [Test]
    public void Admission_WaitsUntilThePoolHoldsTheWholePrompt()
    {
        BatchScheduler scheduler = Scheduler(pages: 8, chunk: 4);
        Sequence a = Add(scheduler, 20); // 5 pages
        Sequence b = Add(scheduler, 16); // 4 pages: fits only after a leaves
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (a, 4) }));
        Assert.That(_pool.FreePages, Is.EqualTo(7));
        Assert.That(scheduler.Waiting, Is.EqualTo(new[] { b }), "a's remaining prompt is reserved");
        while (a.Remaining > 1)
            Step(scheduler);
        scheduler.Finish(a);
        Assert.That(_pool.FreePages, Is.EqualTo(8));
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (b, 4) }));
    }

    [Test]
    public void MaxRunningRequests_CapsAdmissions()
    {
        BatchScheduler scheduler = Scheduler(pages: 64, maxRunning: 2);
        Sequence a = Add(scheduler, 3), b = Add(scheduler, 3), c = Add(scheduler, 3);
        Assert.That(Step(scheduler).Select(e => e.Sequence), Is.EqualTo(new[] { a, b }));
        Assert.That(scheduler.Waiting, Is.EqualTo(new[] { c }));
        scheduler.Finish(a);
        Assert.That(Step(scheduler).Select(e => e.Sequence), Is.EqualTo(new[] { b, c }));
    }

    [Test]
    public void WhenThePoolRunsOut_TheNewestSequenceIsPreempted_AndRecomputedLater()
    {
        BatchScheduler scheduler = Scheduler(pages: 4, chunk: 64);
        Sequence a = Add(scheduler, 8), b = Add(scheduler, 7);
        Step(scheduler); // both prefilled: 2 pages each, the pool is full
        Assert.That(_pool.FreePages, Is.Zero);
        Step(scheduler); // b's 8th token still fits its second page; a's 9th needs a third page
        Assert.That(scheduler.Preemptions, Is.EqualTo(1));
        Assert.That(scheduler.Running, Is.EqualTo(new[] { a }));
        Assert.That(scheduler.Waiting, Is.EqualTo(new[] { b }));
        Assert.That((b.ComputedTokens, b.PageTable.Count, b.Status), Is.EqualTo((0, 0, SequenceStatus.Waiting)));
        Assert.That(b.Tokens, Has.Count.EqualTo(8), "generated tokens are kept and recomputed");

        scheduler.Finish(a);
        Assert.That(Step(scheduler), Is.EqualTo(new[] { (b, 8) }));
    }

    [Test]
    public void Remove_FreesARunningSequencesPagesAtOnce()
    {
        BatchScheduler scheduler = Scheduler(pages: 16);
        Sequence a = Add(scheduler, 30);
        Step(scheduler);
        Assert.That(_pool.FreePages, Is.LessThan(16));
        Assert.That(scheduler.Remove(a), Is.False);
        Assert.That(_pool.FreePages, Is.EqualTo(16));
        Assert.That(scheduler.IsIdle, Is.True);
        Sequence b = Add(scheduler, 3);
        Assert.That(scheduler.Remove(b), Is.True, "b was still waiting");
    }

    [Test]
    public void AdmissionReusesACachedPrefix_SharingWholePages_AndCopyingAPartialOne()
    {
        BatchScheduler scheduler = Scheduler(pages: 32, chunk: 64, prefixCache: true);
        Sequence a = Add(scheduler, 10);
        Step(scheduler);
        int[] aPages = [.. a.PageTable];
        scheduler.Finish(a); // caches a's 10 computed tokens (its 11th was sampled, never fed)

        Sequence b = Add(scheduler, 14);
        var step = Step(scheduler);
        Assert.That(step, Is.EqualTo(new[] { (b, 4) }), "10 of 14 prompt tokens come from the cache");
        Assert.That(b.CachedPromptTokens, Is.EqualTo(10));
        Assert.That(b.PageTable.Take(2), Is.EqualTo(aPages.Take(2)), "whole pages are shared");
        Assert.That(b.PageTable[2], Is.Not.EqualTo(aPages[2]), "the partial page is b's own copy");
        Assert.That(_pool.References(aPages[0]), Is.EqualTo(2));
    }
}
