using System.Diagnostics;
using System.Runtime.InteropServices;
using Ftransformers.Memory;

namespace Ftransformers.Serving;

/// <summary>One sequence's share of a step: its next <see cref="Count"/> uncomputed tokens.</summary>
internal readonly record struct ScheduledSequence(Sequence Sequence, int Count)
{
    /// <summary>Whether the step reaches the sequence's last token, so its logits are sampled.</summary>
    public bool Samples => Sequence.ComputedTokens + Count == Sequence.Tokens.Count;
}

/// <summary>
/// Continuous batching with chunked prefill. Each step takes the decode token of every running sequence, then
/// prompt chunks (of running sequences still prefilling, then of newly admitted ones) up to
/// <c>chunkedPrefillSize</c> tokens. A waiting sequence is admitted, oldest first, when a running slot is free and
/// the pool (after evicting unlocked cached prefixes) holds its whole prompt beside what admitted prompts still
/// need. When a running sequence needs a page and none is left even after eviction, the newest running sequence is
/// preempted: its pages are freed and it waits to be recomputed (prompt and generated tokens) later.
/// Owned by the engine loop thread.
/// </summary>
internal sealed class BatchScheduler
{
    private readonly KvCachePool _pool;
    private readonly ILatentStore _kv;
    private readonly PrefixCache? _prefixCache;
    private readonly int _chunkedPrefillSize, _maxRunning;
    private readonly List<Sequence> _waiting = [];
    private readonly List<Sequence> _running = [];
    private readonly List<ScheduledSequence> _batch = [];

    /// <summary>Creates a scheduler over a pool's pages, the store they address (a reused prefix's partial page is copied there), and an optional prefix cache.</summary>
    public BatchScheduler(KvCachePool pool, ILatentStore kv, PrefixCache? prefixCache, int chunkedPrefillSize, int maxRunningRequests)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkedPrefillSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRunningRequests, 1);
        _pool = pool;
        _kv = kv;
        _prefixCache = prefixCache;
        _chunkedPrefillSize = chunkedPrefillSize;
        _maxRunning = maxRunningRequests;
    }

    /// <summary>Sequences holding pages (prefilling or decoding), oldest admission first.</summary>
    public IReadOnlyList<Sequence> Running => _running;

    /// <summary>Sequences queued for admission, next first.</summary>
    public IReadOnlyList<Sequence> Waiting => _waiting;

    /// <summary>Whether nothing is queued or running.</summary>
    public bool IsIdle => _waiting.Count == 0 && _running.Count == 0;

    /// <summary>Sequences preempted so far.</summary>
    public long Preemptions { get; private set; }

    /// <summary>Admissions in the last <see cref="Schedule"/> (first admissions and re-admissions).</summary>
    public int AdmittedLastStep { get; private set; }

    /// <summary>Preemptions in the last <see cref="Schedule"/>.</summary>
    public int PreemptedLastStep { get; private set; }

    /// <summary>Queues a new sequence behind the others.</summary>
    public void Add(Sequence sequence)
    {
        sequence.Status = SequenceStatus.Waiting;
        _waiting.Add(sequence);
    }

    /// <summary>Decides the next step: which sequences run how many tokens. Allocates the pages they write.</summary>
    public IReadOnlyList<ScheduledSequence> Schedule()
    {
        _batch.Clear();
        AdmittedLastStep = PreemptedLastStep = 0;

        // Decode tokens first, oldest first; a shortage preempts from the newest end (possibly the sequence itself).
        for (int i = 0; i < _running.Count; i++)
        {
            Sequence sequence = _running[i];
            if (sequence.Remaining != 1)
                continue;
            while (!TryReserve(sequence, 1))
            {
                Sequence victim = _running[^1];
                Preempt(victim);
                if (victim == sequence)
                    break;
            }
            if (sequence.Status == SequenceStatus.Running)
                _batch.Add(new ScheduledSequence(sequence, 1));
        }

        // Prompt chunks of admitted sequences, in admission order, as far as the budget and the free pages allow.
        int budget = _chunkedPrefillSize;
        foreach (Sequence sequence in _running)
        {
            if (budget == 0)
                break;
            if (sequence.Remaining <= 1)
                continue;
            int count = Fit(sequence, Math.Min(sequence.Remaining, budget));
            if (count == 0)
                continue;
            _batch.Add(new ScheduledSequence(sequence, count));
            budget -= count;
        }

        // New admissions; not in a step that had to preempt, which would only bring the victim straight back.
        while (PreemptedLastStep == 0 && budget > 0 && _waiting.Count > 0 && _running.Count < _maxRunning && Admit(_waiting[0]))
        {
            Sequence sequence = _waiting[0];
            _waiting.RemoveAt(0);
            _running.Add(sequence);
            AdmittedLastStep++;
            int count = Math.Min(sequence.Remaining, budget);
            if (!TryReserve(sequence, count))
                throw new InvalidOperationException("An admitted sequence found no pages for its first chunk.");
            _batch.Add(new ScheduledSequence(sequence, count));
            budget -= count;
        }

        // Every running sequence stalled on pages: free the newest so the rest can move (a lone one comes back
        // without its prefix match, whose locked pages are then evictable).
        if (_batch.Count == 0 && _running.Count > 0)
            Preempt(_running[^1]);
        return _batch;
    }

    /// <summary>
    /// Caches the prompt tokens a running sequence has computed so far (after each prefill chunk, as SGLang does), so
    /// that requests arriving while it still runs reuse them; the sequence then pins the deeper node instead.
    /// </summary>
    public void CachePrefill(Sequence sequence)
    {
        if (_prefixCache == null || sequence.Status != SequenceStatus.Running)
            return;
        ReadOnlySpan<int> computed = CollectionsMarshal.AsSpan(sequence.Tokens)[..Math.Min(sequence.ComputedTokens, sequence.PromptLength)];
        PrefixCacheNode node = _prefixCache.Insert(computed, sequence.PageTable);
        _prefixCache.Lock(node);
        if (sequence.LockedNode != null)
            _prefixCache.Unlock(sequence.LockedNode);
        sequence.LockedNode = node;
    }

    /// <summary>Releases a finished sequence; its computed tokens (prompt and generated) go to the prefix cache.</summary>
    public void Finish(Sequence sequence)
    {
        if (sequence.Status != SequenceStatus.Running)
            throw new InvalidOperationException($"Sequence {sequence.Id} is {sequence.Status}, not running.");
        _prefixCache?.Insert(CollectionsMarshal.AsSpan(sequence.Tokens)[..sequence.ComputedTokens], sequence.PageTable);
        ReleasePages(sequence);
        _running.Remove(sequence);
        sequence.Status = SequenceStatus.Finished;
    }

    /// <summary>Drops a sequence wherever it is (cancelled or failed), freeing its pages at once; nothing is cached.</summary>
    /// <returns>Whether it was waiting (never admitted or preempted).</returns>
    public bool Remove(Sequence sequence)
    {
        bool waiting = sequence.Status == SequenceStatus.Waiting;
        if (waiting)
            _waiting.Remove(sequence);
        else if (sequence.Status == SequenceStatus.Running)
        {
            ReleasePages(sequence);
            _running.Remove(sequence);
        }
        sequence.Status = SequenceStatus.Finished;
        return waiting;
    }

    // Makes sure the sequence's table covers `count` more tokens, evicting cached prefixes if the pool is short.
    private bool TryReserve(Sequence sequence, int count)
    {
        int needed = _pool.PagesFor(sequence.ComputedTokens + count) - sequence.PageTable.Count;
        if (needed <= 0)
            return true;
        if (_pool.FreePages < needed)
            _prefixCache?.Evict(needed - _pool.FreePages);
        if (_pool.FreePages < needed)
            return false;
        for (int i = 0; i < needed; i++)
            sequence.PageTable.Add(_pool.Allocate());
        return true;
    }

    // The largest chunk up to `count` tokens the pool can hold now.
    private int Fit(Sequence sequence, int count)
    {
        if (TryReserve(sequence, count))
            return count;
        int room = (sequence.PageTable.Count + _pool.FreePages) * _pool.PageSize - sequence.ComputedTokens;
        count = Math.Min(count, room);
        return count > 0 && TryReserve(sequence, count) ? count : 0;
    }

    // With nothing running every cached page is evictable, except those a match would lock: if the match is what
    // stands in the way, the sequence is admitted without it, so the queue always moves.
    private bool Admit(Sequence sequence) =>
        TryAdmit(sequence, _prefixCache != null) || (_running.Count == 0 && _prefixCache != null && TryAdmit(sequence, usePrefixCache: false));

    // Admission: reuse the longest cached prefix (at least the last token is computed, for its logits), then
    // require pages for the whole rest of the prompt beside what admitted prompts still need.
    private bool TryAdmit(Sequence sequence, bool usePrefixCache)
    {
        int pageSize = _pool.PageSize;
        PrefixMatch? match = usePrefixCache ? _prefixCache!.Match(CollectionsMarshal.AsSpan(sequence.Tokens)[..^1]) : null;
        int cached = match?.Length ?? 0;
        int needed = _pool.PagesFor(sequence.Tokens.Count) - cached / pageSize;
        int reserved = 0;
        foreach (Sequence running in _running)
            reserved += Math.Max(0, _pool.PagesFor(running.Tokens.Count) - running.PageTable.Count);

        if (match is { } m)
            _prefixCache!.Lock(m.Node);
        if (_pool.FreePages - reserved < needed)
            _prefixCache?.Evict(needed - (_pool.FreePages - reserved));
        if (_pool.FreePages - reserved < needed)
        {
            if (match is { } unlocked)
                _prefixCache!.Unlock(unlocked.Node);
            return false;
        }

        if (match is { } hit)
        {
            // Whole pages are shared; the valid start of a partial last page is copied, since this sequence writes
            // its own tokens after it.
            for (int k = 0; k < cached / pageSize; k++)
            {
                _pool.Retain(hit.Pages[k]);
                sequence.PageTable.Add(hit.Pages[k]);
            }
            if (cached % pageSize != 0)
            {
                int page = _pool.Allocate();
                _kv.CopyPositions((long)hit.Pages[^1] * pageSize, (long)page * pageSize, cached % pageSize);
                sequence.PageTable.Add(page);
            }
            sequence.LockedNode = hit.Node;
        }
        _prefixCache?.RecordLookup(cached);
        sequence.ComputedTokens = cached;
        sequence.Status = SequenceStatus.Running;
        if (sequence.AdmittedAt == null)
        {
            sequence.AdmittedAt = Stopwatch.GetTimestamp();
            sequence.CachedPromptTokens = Math.Min(cached, sequence.PromptLength);
        }
        return true;
    }

    private void Preempt(Sequence sequence)
    {
        ReleasePages(sequence);
        _running.Remove(sequence);
        sequence.Status = SequenceStatus.Waiting;
        _waiting.Insert(0, sequence);
        Preemptions++;
        PreemptedLastStep++;
    }

    private void ReleasePages(Sequence sequence)
    {
        foreach (int page in sequence.PageTable)
            _pool.Release(page);
        sequence.PageTable.Clear();
        sequence.ComputedTokens = 0;
        if (sequence.LockedNode != null)
        {
            _prefixCache!.Unlock(sequence.LockedNode);
            sequence.LockedNode = null;
        }
    }
}
