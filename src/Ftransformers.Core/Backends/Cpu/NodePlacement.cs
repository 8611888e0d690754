using Ftransformers.Model;
using Ftransformers.Threading;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// Copies matrices into native memory split by rows across the pool's NUMA nodes: node n's rows are bound to its OS
/// node (<see cref="NodeMemory.TryBind"/>) and copied by node n's own threads, so they are also first touched there.
/// Owns the copies until disposed.
/// </summary>
internal sealed unsafe class NodePlacement(ComputePool pool) : IDisposable
{
    // Bytes one copy task moves: large enough to stream, small enough to spread a node's rows over its threads.
    private const long CopyChunk = 1 << 20;

    private readonly List<nint> _blocks = [];
    private readonly CopyJob _copy = new();

    /// <summary>
    /// A copy of <paramref name="matrix"/> whose rows [rowsOfNode[n], rowsOfNode[n + 1]) live on node n; bounds must
    /// fall on the matrix's row units.
    /// </summary>
    public WeightMatrix Place(WeightMatrix matrix, int[] rowsOfNode)
    {
        RowStorage[] storage = matrix.Storage();
        var starts = new nint[storage.Length];
        _copy.Clear(pool.NodeCount);
        for (int s = 0; s < storage.Length; s++)
        {
            RowStorage part = storage[s];
            byte* block = NodeMemory.Allocate(part.Length);
            _blocks.Add((nint)block);
            starts[s] = (nint)block;
            for (int n = 0; n < pool.NodeCount; n++)
            {
                if (rowsOfNode[n] % part.UnitRows != 0 && rowsOfNode[n] != matrix.Rows)
                    throw new ArgumentException($"{matrix.Name}: node {n}'s rows start at {rowsOfNode[n]}, inside a unit of {part.UnitRows} rows.", nameof(rowsOfNode));
                long from = rowsOfNode[n] / part.UnitRows * part.BytesPerUnit;
                long to = Math.Min(part.Length, (rowsOfNode[n + 1] + part.UnitRows - 1) / part.UnitRows * part.BytesPerUnit);
                if (to <= from)
                    continue;
                NodeMemory.TryBind(block + from, to - from, pool.Topology.Nodes[n].OsNode);
                for (long at = from; at < to; at += CopyChunk)
                    _copy.Add(n, (byte*)part.Start + at, block + at, Math.Min(CopyChunk, to - at));
            }
        }
        Span<int> counts = stackalloc int[pool.NodeCount];
        _copy.Count(counts);
        pool.ForNodes(_copy, counts);
        return matrix.Relocated(starts);
    }

    public void Dispose()
    {
        foreach (nint block in _blocks)
            NodeMemory.Free((byte*)block);
        _blocks.Clear();
    }

    // Each node's copy tasks, run by that node's threads.
    private sealed class CopyJob : INodeWork
    {
        private List<(nint From, nint To, long Bytes)>[] _tasks = [];

        public void Clear(int nodes)
        {
            if (_tasks.Length != nodes)
                _tasks = [.. Enumerable.Range(0, nodes).Select(_ => new List<(nint, nint, long)>())];
            foreach (var list in _tasks)
                list.Clear();
        }

        public void Add(int node, byte* from, byte* to, long bytes) => _tasks[node].Add(((nint)from, (nint)to, bytes));

        public void Count(Span<int> counts)
        {
            for (int n = 0; n < _tasks.Length; n++)
                counts[n] = _tasks[n].Count;
        }

        public void Run(int node, int start, int end)
        {
            for (int i = start; i < end; i++)
            {
                var (from, to, bytes) = _tasks[node][i];
                Buffer.MemoryCopy((void*)from, (void*)to, bytes, bytes);
            }
        }
    }
}
