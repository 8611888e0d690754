namespace Ftransformers.Memory;

/// <summary>
/// An array on the pinned object heap that only this type allocates, so a pointer into it stays valid while the
/// object lives. Types that keep raw pointers into managed memory take one of these, never a caller's array:
/// an ordinary array may be moved by the GC and its pointer then reads freed memory.
/// </summary>
internal sealed unsafe class PinnedArray<T> where T : unmanaged
{
    private readonly T[] _array;

    private PinnedArray(T[] array) => _array = array;

    /// <summary>A zeroed array of <paramref name="length"/> elements.</summary>
    public static PinnedArray<T> Zeroed(int length) => new(GC.AllocateArray<T>(length, pinned: true));

    /// <summary>An array of <paramref name="length"/> elements whose contents are undefined until written.</summary>
    public static PinnedArray<T> Uninitialized(int length) => new(GC.AllocateUninitializedArray<T>(length, pinned: true));

    /// <summary>A pinned copy of <paramref name="values"/>.</summary>
    public static PinnedArray<T> CopyOf(ReadOnlySpan<T> values)
    {
        PinnedArray<T> copy = Uninitialized(values.Length);
        values.CopyTo(copy.Span);
        return copy;
    }

    /// <summary>Elements.</summary>
    public int Length => _array.Length;

    /// <summary>The elements.</summary>
    public Span<T> Span => _array;

    /// <summary>The first element's address (valid while this object is reachable; null when empty).</summary>
    public T* Pointer => _array.Length == 0 ? null : (T*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _array[0]);

    /// <summary>The elements as a stream's backing store (for writers that fill it).</summary>
    public T[] UnsafeArray => _array;
}
