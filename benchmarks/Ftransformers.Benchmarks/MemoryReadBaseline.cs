using System.Numerics.Tensors;
using Ftransformers.Threading;

namespace Ftransformers.Benchmarks;

/// <summary>
/// The machine's read bandwidth as the kernels are measured against it: a vectorized sum over 1 GiB of floats, split
/// across the pool's threads (or on the caller alone).
/// </summary>
internal sealed class MemoryReadBaseline : IRangeWork
{
    private const int Chunks = 256;

    /// <summary>Bytes one <see cref="Read"/> streams.</summary>
    public const long Bytes = 4L << 28;

    private readonly float[] _buffer = GC.AllocateArray<float>((int)(Bytes / sizeof(float)), pinned: true);
    private readonly float[] _partial = new float[Chunks];

    public MemoryReadBaseline() => _buffer.AsSpan().Fill(1f);

    /// <summary>Reads every byte once; returns the sum so that nothing is optimized away.</summary>
    public float Read(ComputePool? pool)
    {
        if (pool != null)
            pool.For(Chunks, this);
        else
            Run(0, Chunks);
        return TensorPrimitives.Sum(_partial);
    }

    public void Run(int start, int end)
    {
        int chunk = _buffer.Length / Chunks;
        for (int c = start; c < end; c++)
            _partial[c] = TensorPrimitives.Sum(_buffer.AsSpan(c * chunk, chunk));
    }
}
