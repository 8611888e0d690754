using System.Buffers;

namespace Ftransformers.Model;

/// <summary>
/// Scratch floats rented from the shared pool for the span of one call, so forward passes do not allocate in steady
/// state. The contents start undefined.
/// </summary>
internal readonly struct PooledBuffer : IDisposable
{
    private readonly float[] _array;
    private readonly int _length;

    /// <summary>Rents room for <paramref name="length"/> floats.</summary>
    public PooledBuffer(int length)
    {
        _array = ArrayPool<float>.Shared.Rent(length);
        _length = length;
    }

    /// <summary>Exactly the requested floats.</summary>
    public Span<float> Span => _array.AsSpan(0, _length);

    /// <summary>Returns the array to the pool.</summary>
    public void Dispose() => ArrayPool<float>.Shared.Return(_array);
}
