using System.Buffers;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// Scratch values rented from the shared pool for the span of one call, so forward passes do not allocate in steady
/// state. The contents start undefined.
/// </summary>
internal readonly struct PooledBuffer<T> : IDisposable
{
    private readonly T[] _array;
    private readonly int _length;

    /// <summary>Rents room for <paramref name="length"/> values.</summary>
    public PooledBuffer(int length)
    {
        _array = ArrayPool<T>.Shared.Rent(length);
        _length = length;
    }

    /// <summary>Exactly the requested values.</summary>
    public Span<T> Span => _array.AsSpan(0, _length);

    /// <summary>Returns the array to the pool.</summary>
    public void Dispose() => ArrayPool<T>.Shared.Return(_array);
}
