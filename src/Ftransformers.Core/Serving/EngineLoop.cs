using System.Collections.Concurrent;
using System.Diagnostics;
using Ftransformers.Backends;
using Ftransformers.Inference;
using Ftransformers.Generation;
using Ftransformers.Memory;

namespace Ftransformers.Serving;

/// <summary>
/// The one thread that owns the scheduler, the pool and the prefix cache: it takes submissions and cancellations
/// from an inbox between steps, and runs step after step (schedule, one forward pass, sample, stream) while there is
/// work. Callers talk to it only through <see cref="Submit"/>, <see cref="Cancel"/> and the sequences' streams.
/// </summary>
internal sealed class EngineLoop : IDisposable
{
    private readonly BatchScheduler _scheduler;
    private readonly ModelRunner _runner;
    private readonly KvCachePool _pool;
    private readonly PrefixCache? _prefixCache;
    private readonly int _maxWaiting;
    private readonly ConcurrentQueue<Action> _inbox = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private readonly Thread _thread;
    private bool _closed, _stopRequested;
    private Exception? _fault;
    private int _waiting;
    private SessionStatistics _statistics;

    /// <summary>Starts the loop thread.</summary>
    public EngineLoop(BatchScheduler scheduler, ModelRunner runner, KvCachePool pool, PrefixCache? prefixCache, int maxWaitingRequests)
    {
        _scheduler = scheduler;
        _runner = runner;
        _pool = pool;
        _prefixCache = prefixCache;
        _maxWaiting = maxWaitingRequests;
        _statistics = Snapshot();
        _thread = new Thread(Run) { IsBackground = true, Name = "Ftransformers engine loop" };
        _thread.Start();
    }

    /// <summary>The latest load snapshot; waiting counts submissions the loop has not picked up yet.</summary>
    public SessionStatistics Statistics => Volatile.Read(ref _statistics) with { WaitingRequests = Math.Max(0, Volatile.Read(ref _waiting)) };

    /// <summary>Queues a sequence for admission.</summary>
    /// <exception cref="QueueFullException">MaxWaitingRequests sequences are already waiting.</exception>
    /// <exception cref="ObjectDisposedException">The session is shutting down.</exception>
    public void Submit(Sequence sequence)
    {
        if (Interlocked.Increment(ref _waiting) > _maxWaiting)
        {
            Interlocked.Decrement(ref _waiting);
            throw new QueueFullException($"Request rejected: {_maxWaiting} requests are already waiting (MaxWaitingRequests). Retry later.");
        }
        try
        {
            Post(() => _scheduler.Add(sequence));
        }
        catch
        {
            Interlocked.Decrement(ref _waiting);
            throw;
        }
    }

    /// <summary>Asks the loop to drop a sequence and free its pages before the next step.</summary>
    public void Cancel(Sequence sequence)
    {
        try
        {
            Post(() =>
            {
                if (sequence.Status == SequenceStatus.Finished)
                    return;
                if (_scheduler.Remove(sequence))
                    Interlocked.Decrement(ref _waiting);
                sequence.Fail(new OperationCanceledException("The request was cancelled."));
            });
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
            // Shut down or faulted: the loop fails every sequence on its way out, so a cancellation has nothing to do.
        }
    }

    /// <summary>Runs <paramref name="action"/> on the loop thread between steps (tests inspect the pool and cache).</summary>
    public Task<T> InvokeAsync<T>(Func<T> action)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() =>
        {
            try
            {
                done.SetResult(action());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        });
        return done.Task;
    }

    private void Post(Action action)
    {
        lock (_gate)
        {
            if (_closed)
                throw _fault != null
                    ? new InvalidOperationException("The inference engine stopped after an internal error.", _fault)
                    : new ObjectDisposedException(nameof(InferenceSession));
            _inbox.Enqueue(action);
        }
        _signal.Release();
    }

    private void Run()
    {
        try
        {
            while (!Volatile.Read(ref _stopRequested))
            {
                while (_inbox.TryDequeue(out Action? action))
                    action();
                if (_scheduler.IsIdle)
                {
                    Publish();
                    _signal.Wait();
                    continue;
                }
                Step();
                Publish();
            }
        }
        catch (OperationCanceledException) when (Volatile.Read(ref _stopRequested))
        {
        }
        catch (Exception e)
        {
            _fault = e;
        }
        finally
        {
            Shutdown();
        }
    }

    private void Step()
    {
        long start = Stopwatch.GetTimestamp();
        IReadOnlyList<ScheduledSequence> step = _scheduler.Schedule();
        Interlocked.Add(ref _waiting, _scheduler.PreemptedLastStep - _scheduler.AdmittedLastStep);
        if (step.Count == 0)
        {
            // Nothing fits this step (the scheduler preempted to make room); look again shortly or on news.
            _signal.Wait(1);
            return;
        }
        int tokens = 0;
        for (int i = 0; i < step.Count; i++)
            tokens += step[i].Count;
        StepTrace trace = _runner.Trace;
        trace.Begin(tokens == step.Count ? StepKind.Decode : StepKind.Prefill, start);
        try
        {
            trace.Lap(-1, ModelPart.Scheduling);
            RunAndSample(step);
            trace.Lap(-1, ModelPart.Sampling);
        }
        finally
        {
            trace.End(tokens, step.Count);
        }
    }

    private void RunAndSample(IReadOnlyList<ScheduledSequence> step)
    {
        // Which entries sample is fixed before their computed counts move.
        Span<bool> samples = step.Count <= 256 ? stackalloc bool[step.Count] : new bool[step.Count];
        for (int i = 0; i < step.Count; i++)
            samples[i] = step[i].Samples;

        ReadOnlySpan<float> logits;
        try
        {
            logits = _runner.Run(step, _stop.Token);
        }
        catch (Exception e) when (e is not OperationCanceledException || !_stop.IsCancellationRequested)
        {
            // A failed pass wrote only into the pages of its own sequences: drop those, keep serving the others.
            foreach (ScheduledSequence entry in step.ToArray())
            {
                _scheduler.Remove(entry.Sequence);
                entry.Sequence.Fail(e);
            }
            return;
        }

        int vocab = _runner.VocabSize, row = 0;
        for (int i = 0; i < step.Count; i++)
        {
            Sequence sequence = step[i].Sequence;
            bool prefill = sequence.ComputedTokens < sequence.PromptLength;
            sequence.ComputedTokens += step[i].Count;
            if (prefill)
                _scheduler.CachePrefill(sequence);
            if (!samples[i])
                continue;
            bool finished;
            try
            {
                finished = sequence.Accept(logits.Slice(row++ * vocab, vocab));
            }
            catch (Exception e)
            {
                // Sampling or decoding failed for this request alone (say, a tokenizer error): end it, keep the rest.
                _scheduler.Remove(sequence);
                sequence.Fail(e);
                continue;
            }
            if (finished)
                _scheduler.Finish(sequence);
        }
    }

    private void Publish() => Volatile.Write(ref _statistics, Snapshot());

    private SessionStatistics Snapshot() => new(_scheduler.Running.Count, 0, (long)_pool.UsedPages * _pool.PageSize, _pool.CapacityTokens)
    {
        Preemptions = _scheduler.Preemptions,
        PrefixCacheLookups = _prefixCache?.Lookups ?? 0,
        PrefixCacheHitTokens = _prefixCache?.HitTokens ?? 0,
        PrefixCacheEvictedTokens = _prefixCache?.EvictedTokens ?? 0,
        PrefixCacheTokens = _prefixCache?.CachedTokens ?? 0,
    };

    // Closes the inbox, runs what was posted before, then ends every stream still open.
    private void Shutdown()
    {
        lock (_gate)
            _closed = true;
        Exception error = _fault != null
            ? new InvalidOperationException("The inference engine stopped after an internal error.", _fault)
            : new ObjectDisposedException(nameof(InferenceSession));
        while (_inbox.TryDequeue(out Action? action))
        {
            // Each posted action runs even if an earlier one fails, so that no submitted request is left unanswered.
            try
            {
                action();
            }
            catch (Exception)
            {
                // Best effort: the streams below are ended regardless.
            }
        }
        foreach (Sequence sequence in _scheduler.Running.Concat(_scheduler.Waiting).ToArray())
        {
            sequence.Status = SequenceStatus.Finished;
            sequence.Fail(error);
        }
        Publish();
    }

    /// <summary>Stops the loop (the step in flight is abandoned at its next layer) and ends every open stream.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_stopRequested)
                return;
            _stopRequested = true;
        }
        _stop.Cancel();
        _signal.Release();
        if (Thread.CurrentThread != _thread)
            _thread.Join();
        _stop.Dispose();
        _signal.Dispose();
    }
}
