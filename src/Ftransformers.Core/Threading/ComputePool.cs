using System.Runtime.InteropServices;

namespace Ftransformers.Threading;

/// <summary>A piece of parallel work over an index range, reused across calls so that dispatch allocates nothing.</summary>
public interface IRangeWork
{
    /// <summary>Processes indices [start, end).</summary>
    void Run(int start, int end);
}

/// <summary>Parallel work with one index range per node: a node's threads take only that node's indices.</summary>
public interface INodeWork
{
    /// <summary>Processes indices [start, end) of <paramref name="node"/>'s range.</summary>
    void Run(int node, int start, int end);
}

/// <summary>
/// Fixed worker threads for the kernels (not the .NET ThreadPool), grouped by NUMA node and pinned to their node's
/// CPUs on Linux; woken per job through one semaphore each, spinning briefly between jobs so that back-to-back
/// matrix products do not pay a kernel round trip. The calling thread takes part in every job as a thread of node 0.
/// One job runs at a time: <see cref="For"/> over all threads, or a per-node job that <see cref="Start"/> begins on
/// the workers and <see cref="Join"/> finishes, so that the caller can do other work in between.
/// </summary>
public sealed class ComputePool : IDisposable
{
    // Spin this many rounds for the next job (or for the last worker) before blocking.
    private const int SpinRounds = 2000;

    // One node's share of a job. Next, which every thread of the node bumps, sits 96 bytes from anything else (another
    // node's range, the array's length that each access checks), so no cache line holds it and something read.
    [StructLayout(LayoutKind.Explicit, Size = 192)]
    private struct Range
    {
        [FieldOffset(0)] public int Count;
        [FieldOffset(4)] public int Grain;
        [FieldOffset(96)] public int Next;
    }

    private readonly Thread[] _workers;
    private readonly int[] _workerNode;
    private readonly SemaphoreSlim[] _wake;
    private readonly ManualResetEventSlim _done = new(false);
    private readonly Lock _gate = new();
    private readonly Range[] _ranges;
    private readonly RangeAsNodeWork _flat = new();
    private INodeWork? _work;
    private bool _perNode;
    private int _pending, _generation;
    private volatile bool _disposed;
    private Exception? _failure;
    private ComputePool? _callerOuter;

    [ThreadStatic]
    private static ComputePool? t_workerOf;

    /// <summary>Threads that compute, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>Where the threads run.</summary>
    public CpuTopology Topology { get; }

    /// <summary>Node groups of threads.</summary>
    public int NodeCount => Topology.Nodes.Count;

    /// <summary>Starts <paramref name="threads"/> − 1 workers in one node (the caller is the last thread).</summary>
    /// <param name="threads">Computing threads, at least 1.</param>
    /// <param name="pin">Pin worker i to CPU i + 1 (Linux only; elsewhere ignored).</param>
    public ComputePool(int threads, bool pin = true) : this(CpuTopology.Flat(threads), pin)
    {
    }

    /// <summary>Starts one worker per CPU of <paramref name="topology"/> but the first of node 0, which is the caller's slot.</summary>
    /// <param name="topology">The nodes and their CPUs.</param>
    /// <param name="pin">Pin each worker to its CPU (Linux only; elsewhere ignored).</param>
    public ComputePool(CpuTopology topology, bool pin = true)
    {
        Topology = topology;
        ThreadCount = topology.ThreadCount;
        _ranges = new Range[topology.Nodes.Count];
        var slots = topology.Nodes.SelectMany(n => n.Cpus.Select(cpu => (Node: n.Index, Cpu: cpu))).Skip(1).ToArray();
        _workers = new Thread[slots.Length];
        _workerNode = new int[slots.Length];
        _wake = new SemaphoreSlim[slots.Length];
        for (int i = 0; i < _workers.Length; i++)
        {
            int index = i, cpu = slots[i].Cpu;
            _workerNode[i] = slots[i].Node;
            _wake[i] = new SemaphoreSlim(0);
            _workers[i] = new Thread(() => WorkerLoop(index, pin ? cpu : -1)) { IsBackground = true, Name = $"ftransformers-compute-{i + 1}" };
            _workers[i].Start();
        }
    }

    /// <summary>Compute threads of <paramref name="node"/>, the caller counted in node 0.</summary>
    public int ThreadsOn(int node) => Topology.Nodes[node].Cpus.Count;

    /// <summary>Runs <paramref name="work"/> over [0, <paramref name="count"/>) on <paramref name="pool"/>'s threads, or on the caller when there is no pool.</summary>
    internal static void RunOn(ComputePool? pool, int count, IRangeWork work, int minChunk = 1)
    {
        if (pool != null)
            pool.For(count, work, minChunk);
        else
            work.Run(0, count);
    }

    /// <summary>Runs <paramref name="work"/> over [0, <paramref name="count"/>) on every thread, in chunks of at least <paramref name="minChunk"/> indices.</summary>
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
            _flat.Work = work;
            int grain = Math.Max(Math.Max(1, minChunk), count / (ThreadCount * 4));
            Begin(_flat, perNode: false, [count], grain);
            try
            {
                Finish();
            }
            finally
            {
                _flat.Work = null;
            }
        }
    }

    /// <summary>
    /// Begins <paramref name="work"/> on the workers, node n's threads taking [0, <paramref name="counts"/>[n]) in chunks
    /// of <paramref name="grain"/>, and returns at once; the caller then may compute on its own (its pool calls run
    /// inline) and must call <see cref="Join"/>, which also drains node 0's range.
    /// </summary>
    public void Start(INodeWork work, ReadOnlySpan<int> counts, int grain = 1)
    {
        if (counts.Length != NodeCount)
            throw new ArgumentException($"A node job needs one count per node ({NodeCount}), got {counts.Length}.", nameof(counts));
        _gate.Enter();
        try
        {
            Begin(work, perNode: true, counts, Math.Max(1, grain));
        }
        catch
        {
            _gate.Exit();
            throw;
        }
    }

    /// <summary>Takes part in the job <see cref="Start"/> began until it is done; throws the work's first exception.</summary>
    public void Join()
    {
        if (!_gate.IsHeldByCurrentThread || _work == null)
            throw new InvalidOperationException("Join needs a job this thread started.");
        try
        {
            Finish();
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Runs a per-node job to its end (<see cref="Start"/> then <see cref="Join"/>).</summary>
    public void ForNodes(INodeWork work, ReadOnlySpan<int> counts, int grain = 1)
    {
        Start(work, counts, grain);
        Join();
    }

    private void Begin(INodeWork work, bool perNode, ReadOnlySpan<int> counts, int grain)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _work = work;
        _perNode = perNode;
        for (int n = 0; n < counts.Length; n++)
            _ranges[n] = new Range { Next = 0, Count = counts[n], Grain = grain };
        _failure = null;
        _pending = _workers.Length;
        foreach (SemaphoreSlim wake in _wake)
            wake.Release();
        Interlocked.Increment(ref _generation);
        // Until the job ends, the caller's own pool calls run inline.
        _callerOuter = t_workerOf;
        t_workerOf = this;
    }

    private void Finish()
    {
        try
        {
            Drain(0);
        }
        finally
        {
            t_workerOf = _callerOuter;
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

    private void Drain(int node)
    {
        INodeWork work = _work!;
        ref Range range = ref _ranges[node];
        try
        {
            for (int start; (start = Interlocked.Add(ref range.Next, range.Grain) - range.Grain) < range.Count;)
                work.Run(node, start, Math.Min(start + range.Grain, range.Count));
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
            for (int n = 0; n < _ranges.Length; n++)
                Volatile.Write(ref _ranges[n].Next, _ranges[n].Count);
        }
    }

    private void WorkerLoop(int index, int cpu)
    {
        t_workerOf = this;
        if (cpu >= 0)
            CpuAffinity.TryPinCurrentThread(cpu);
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
            Drain(_perNode ? _workerNode[index] : 0);
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

    // Lets a flat job run through the per-node machinery as one range.
    private sealed class RangeAsNodeWork : INodeWork
    {
        public IRangeWork? Work;

        public void Run(int node, int start, int end) => Work!.Run(start, end);
    }
}
