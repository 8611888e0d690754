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

    private const int MinChunksPerNode = 64;

    private readonly ComputePool? _pool;
    private readonly byte*[] _buffers;
    private readonly float[] _partial;
    private readonly int[] _counts, _chunks, _chunkFloats;
    private bool _fill;

    /// <summary>Places <paramref name="bytesPerNode"/> bytes on each of the pool's nodes (one buffer without a pool), written by their own threads.</summary>
    public MemoryReadProbe(ComputePool? pool, long bytesPerNode = DefaultBytesPerNode)
    {
        _pool = pool;
        int nodes = pool?.NodeCount ?? 1;
        _buffers = new byte*[nodes];
        _counts = new int[nodes];
        // A whole number of chunks per thread of the node, so that no thread idles through a last round.
        _chunks = [.. Enumerable.Range(0, nodes).Select(n => pool?.ThreadsOn(n) ?? 1).Select(t => t * ((MinChunksPerNode + t - 1) / t))];
        ArgumentOutOfRangeException.ThrowIfLessThan(bytesPerNode, (long)_chunks.Max() * NodeMemory.PageSize);
        _chunkFloats = [.. _chunks.Select(c => (int)(bytesPerNode / c / sizeof(float)))];
        BytesPerNode = (long)_chunkFloats[0] * sizeof(float) * _chunks[0];
        _partial = new float[_chunks.Sum()];
        for (int n = 0; n < nodes; n++)
        {
            _buffers[n] = NodeMemory.Allocate((long)_chunkFloats[n] * sizeof(float) * _chunks[n]);
            if (pool != null)
                NodeMemory.TryBind(_buffers[n], (long)_chunkFloats[n] * sizeof(float) * _chunks[n], pool.Topology.Nodes[n].OsNode);
        }
        // First touch by the node's own threads places the pages where binding is not allowed.
        _fill = true;
        Run(null);
        _fill = false;
    }

    /// <summary>Bytes node 0's buffer holds (and one read of it streams); other nodes' are within a few pages of it.</summary>
    public long BytesPerNode { get; }

    /// <summary>Nodes with a buffer.</summary>
    public int NodeCount => _buffers.Length;

    /// <summary>Bytes <see cref="Read"/> streams for <paramref name="node"/> (null: every node).</summary>
    public long BytesRead(int? node) => node is { } n ? NodeBytes(n) : Enumerable.Range(0, NodeCount).Sum(NodeBytes);

    private long NodeBytes(int node) => (long)_chunkFloats[node] * sizeof(float) * _chunks[node];

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
            _counts[n] = node == null || node == n ? _chunks[n] : 0;
        if (_pool != null)
            _pool.ForNodes(this, _counts);
        else
            Run(0, 0, _chunks[0]);
    }

    /// <inheritdoc/>
    public void Run(int node, int start, int end)
    {
        int first = 0;
        for (int n = 0; n < node; n++)
            first += _chunks[n];
        for (int c = start; c < end; c++)
        {
            var chunk = new Span<float>(_buffers[node] + (long)c * _chunkFloats[node] * sizeof(float), _chunkFloats[node]);
            if (_fill)
                chunk.Fill(1f);
            else
                _partial[first + c] = TensorPrimitives.Sum(chunk);
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
