using System.Numerics.Tensors;
using Ftransformers.Threading;

namespace Ftransformers.Diagnostics;

/// <summary>
/// The machine's read bandwidth as the kernels are judged against it: a vectorized sum over a buffer per NUMA node,
/// each placed on its node and read by that node's threads, one node alone or all of them at once.
/// </summary>
public sealed unsafe class MemoryReadProbe : INodeWork, IDisposable
{
    /// <summary>Bytes read per node by default: far beyond any last-level cache.</summary>
    public const long DefaultBytesPerNode = 1L << 30;

    private const int ChunksPerNode = 64;

    private readonly ComputePool? _pool;
    private readonly byte*[] _buffers;
    private readonly float[] _partial;
    private readonly int[] _counts;
    private readonly int _chunkFloats;
    private bool _fill;

    /// <summary>Places <paramref name="bytesPerNode"/> bytes on each of the pool's nodes (one buffer without a pool), written by their own threads.</summary>
    public MemoryReadProbe(ComputePool? pool, long bytesPerNode = DefaultBytesPerNode)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytesPerNode, (long)ChunksPerNode * NodeMemory.PageSize);
        _pool = pool;
        int nodes = pool?.NodeCount ?? 1;
        _chunkFloats = (int)(bytesPerNode / ChunksPerNode / sizeof(float));
        BytesPerNode = (long)_chunkFloats * sizeof(float) * ChunksPerNode;
        _buffers = new byte*[nodes];
        _partial = new float[nodes * ChunksPerNode];
        _counts = new int[nodes];
        for (int n = 0; n < nodes; n++)
        {
            _buffers[n] = NodeMemory.Allocate(BytesPerNode);
            if (pool != null)
                NodeMemory.TryBind(_buffers[n], BytesPerNode, pool.Topology.Nodes[n].OsNode);
        }
        // First touch by the node's own threads places the pages where binding is not allowed.
        _fill = true;
        Run(null);
        _fill = false;
    }

    /// <summary>Bytes one node's buffer holds (and one read of it streams).</summary>
    public long BytesPerNode { get; }

    /// <summary>Nodes with a buffer.</summary>
    public int NodeCount => _buffers.Length;

    /// <summary>Bytes <see cref="Read"/> streams for <paramref name="node"/> (null: every node).</summary>
    public long BytesRead(int? node) => node == null ? BytesPerNode * NodeCount : BytesPerNode;

    /// <summary>Reads node <paramref name="node"/>'s buffer with its threads, or every node's at once (null); returns a sum so nothing is optimized away.</summary>
    public float Read(int? node = null)
    {
        if (node is { } n)
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)n, (uint)NodeCount, nameof(node));
        Run(node);
        return TensorPrimitives.Sum(_partial);
    }

    private void Run(int? node)
    {
        for (int n = 0; n < _counts.Length; n++)
            _counts[n] = node == null || node == n ? ChunksPerNode : 0;
        if (_pool != null)
            _pool.ForNodes(this, _counts);
        else
            Run(0, 0, ChunksPerNode);
    }

    /// <inheritdoc/>
    public void Run(int node, int start, int end)
    {
        for (int c = start; c < end; c++)
        {
            var chunk = new Span<float>(_buffers[node] + (long)c * _chunkFloats * sizeof(float), _chunkFloats);
            if (_fill)
                chunk.Fill(1f);
            else
                _partial[node * ChunksPerNode + c] = TensorPrimitives.Sum(chunk);
        }
    }

    /// <summary>Frees the buffers.</summary>
    public void Dispose()
    {
        for (int n = 0; n < _buffers.Length; n++)
        {
            if (_buffers[n] != null)
                NodeMemory.Free(_buffers[n]);
            _buffers[n] = null;
        }
    }
}
