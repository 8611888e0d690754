using System.Runtime.InteropServices;

namespace Ftransformers.Kernels;

/// <summary>A piece of parallel work over an index range, reused across calls so that dispatch allocates nothing.</summary>
public interface IRangeWork
{
    /// <summary>Processes indices [start, end).</summary>
    void Run(int start, int end);
}

/// <summary>
/// Fixed worker threads for the kernels (not the .NET ThreadPool): pinned to cores on Linux, woken per job
/// through one semaphore each, spinning briefly between jobs so that back-to-back matrix products do not pay a
/// kernel round trip. The calling thread takes part in every job. One job runs at a time.
/// </summary>
public sealed class ComputePool : IDisposable
{
    // Spin this many rounds for the next job (or for the last worker) before blocking.
    private const int SpinRounds = 2000;

    private readonly Thread[] _workers;
    private readonly SemaphoreSlim[] _wake;
    private readonly ManualResetEventSlim _done = new(false);
    private readonly Lock _gate = new();
    private IRangeWork? _work;
    private int _count, _grain, _next, _pending, _generation;
    private volatile bool _disposed;
    private Exception? _failure;

    [ThreadStatic]
    private static ComputePool? t_workerOf;

    /// <summary>Threads that compute, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>Starts <paramref name="threads"/> − 1 workers (the caller is the last thread).</summary>
    /// <param name="threads">Computing threads, at least 1.</param>
    /// <param name="pin">Pin worker i to core i + 1 (Linux only; elsewhere ignored).</param>
    public ComputePool(int threads, bool pin = true)
    {
        if (threads < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "A compute pool needs at least one thread.");
        ThreadCount = threads;
        _workers = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int index = i;
            _wake[i] = new SemaphoreSlim(0);
            _workers[i] = new Thread(() => WorkerLoop(index, pin)) { IsBackground = true, Name = $"ftransformers-compute-{i + 1}" };
            _workers[i].Start();
        }
    }

    /// <summary>Runs <paramref name="work"/> over [0, <paramref name="count"/>) in chunks of at least <paramref name="minChunk"/> indices.</summary>
    public void For(int count, IRangeWork work, int minChunk = 1)
    {
        if (count <= 0)
            return;
        // Nested calls and small jobs run on the calling thread.
        if (_workers.Length == 0 || t_workerOf == this || count <= minChunk)
        {
            work.Run(0, count);
            return;
        }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _work = work;
            _count = count;
            _grain = Math.Max(Math.Max(1, minChunk), count / (ThreadCount * 4));
            _next = 0;
            _failure = null;
            _pending = _workers.Length;
            foreach (SemaphoreSlim wake in _wake)
                wake.Release();
            Interlocked.Increment(ref _generation);
            // While the caller works on the job, its own nested calls must run inline too.
            ComputePool? outer = t_workerOf;
            t_workerOf = this;
            try
            {
                Drain();
            }
            finally
            {
                t_workerOf = outer;
            }
            for (int spin = 0; Volatile.Read(ref _pending) != 0 && spin < SpinRounds; spin++)
                Thread.SpinWait(20);
            // A worker of the previous job may set the event late, so a wake-up proves nothing: reset, then
            // re-check the count before every wait.
            while (true)
            {
                _done.Reset();
                if (Volatile.Read(ref _pending) == 0)
                    break;
                _done.Wait();
            }
            _work = null;
            // The work's own exception, as when it runs inline, whatever the job's size.
            if (_failure is { } failure)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    private void Drain()
    {
        IRangeWork work = _work!;
        try
        {
            for (int start; (start = Interlocked.Add(ref _next, _grain) - _grain) < _count;)
                work.Run(start, Math.Min(start + _grain, _count));
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
            Volatile.Write(ref _next, _count);
        }
    }

    private void WorkerLoop(int index, bool pin)
    {
        t_workerOf = this;
        if (pin)
            CpuAffinity.TryPinCurrentThread((index + 1) % Environment.ProcessorCount);
        int seen = 0;
        while (true)
        {
            for (int spin = 0; Volatile.Read(ref _generation) == seen && spin < SpinRounds && !_disposed; spin++)
                Thread.SpinWait(20);
            _wake[index].Wait();
            if (_disposed)
                return;
            int generation;
            while ((generation = Volatile.Read(ref _generation)) == seen && !_disposed)
                Thread.SpinWait(1);
            if (_disposed)
                return;
            seen = generation;
            Drain();
            if (Interlocked.Decrement(ref _pending) == 0)
                _done.Set();
        }
    }

    /// <summary>Stops the workers.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        lock (_gate)
        {
            _disposed = true;
            foreach (SemaphoreSlim wake in _wake)
                wake.Release();
        }
        foreach (Thread worker in _workers)
            worker.Join();
        foreach (SemaphoreSlim wake in _wake)
            wake.Dispose();
        _done.Dispose();
    }
}

/// <summary>Thread-to-core pinning through Linux <c>sched_setaffinity</c>; a no-op elsewhere.</summary>
internal static partial class CpuAffinity
{
    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nint size, [In] ulong[] mask);

    public static bool TryPinCurrentThread(int core)
    {
        if (!OperatingSystem.IsLinux() || core < 0)
            return false;
        var mask = new ulong[core / 64 + 1];
        mask[core / 64] = 1UL << (core % 64);
        try
        {
            return SchedSetAffinity(0, mask.Length * sizeof(ulong), mask) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }
}
