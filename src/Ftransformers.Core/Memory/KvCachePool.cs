using System.Runtime.InteropServices;
using Ftransformers.Kernels;

namespace Ftransformers.Memory;

/// <summary>
/// The MLA latent cache of every running sequence and cached prefix, preallocated once and handed out in fixed-size
/// pages. A page holds <see cref="PageSize"/> consecutive positions of one sequence in every layer; token slot
/// <c>page * PageSize + offset</c> addresses its row. Pages are reference counted: a sequence's page table and each
/// prefix-cache node that covers a page hold one reference each, and a page returns to the free list at zero.
/// Owned by the engine loop thread; the counters may be read from any thread.
/// </summary>
internal sealed unsafe class KvCachePool : ILatentStore, IDisposable
{
    private readonly byte* _storage;
    private readonly long _layerStride, _rowBytes;
    private readonly int[] _references;
    private readonly int[] _free;
    private int _freeCount;

    /// <summary>Creates a pool of <paramref name="pageCount"/> pages for <paramref name="layers"/> layers of rows.</summary>
    public KvCachePool(int layers, int rowWidth, int pageSize, int pageCount, KvCacheDType dtype)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rowWidth, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(pageCount, 1);
        if (dtype is not (KvCacheDType.F32 or KvCacheDType.BF16))
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "The KV cache stores F32 or BF16.");
        Layers = layers;
        RowWidth = rowWidth;
        PageSize = pageSize;
        PageCount = pageCount;
        DType = dtype;
        _rowBytes = BytesPerToken(1, rowWidth, dtype);
        _layerStride = (long)pageCount * pageSize * _rowBytes;
        // Native memory: the OS commits pages as they are first written, so an unused tail costs address space only.
        _storage = (byte*)NativeMemory.AlignedAlloc((nuint)(_layerStride * layers), 64);
        _references = new int[pageCount];
        _free = new int[pageCount];
        for (int i = 0; i < pageCount; i++)
            _free[i] = pageCount - 1 - i;
        _freeCount = pageCount;
    }

    /// <summary>Layers of rows per token.</summary>
    public int Layers { get; }

    /// <inheritdoc/>
    public int RowWidth { get; }

    /// <summary>Positions per page.</summary>
    public int PageSize { get; }

    /// <summary>Pages in the pool.</summary>
    public int PageCount { get; }

    /// <inheritdoc/>
    public KvCacheDType DType { get; }

    /// <summary>Token slots in all (pages times page size).</summary>
    public long CapacityTokens => (long)PageCount * PageSize;

    /// <summary>Pages on the free list.</summary>
    public int FreePages => Volatile.Read(ref _freeCount);

    /// <summary>Pages referenced by sequences or the prefix cache.</summary>
    public int UsedPages => PageCount - FreePages;

    /// <summary>Pages needed to hold positions 0..<paramref name="tokens"/>-1.</summary>
    public int PagesFor(int tokens) => (tokens + PageSize - 1) / PageSize;

    /// <summary>Takes a page off the free list with one reference.</summary>
    /// <exception cref="InvalidOperationException">No page is free (callers check <see cref="FreePages"/> first).</exception>
    public int Allocate()
    {
        if (_freeCount == 0)
            throw new InvalidOperationException("The KV cache pool has no free page.");
        int page = _free[--_freeCount];
        _references[page] = 1;
        return page;
    }

    /// <summary>Adds a reference to a page in use.</summary>
    public void Retain(int page)
    {
        if (_references[page] <= 0)
            throw new InvalidOperationException($"KV page {page} is free; only a page in use can be shared.");
        _references[page]++;
    }

    /// <summary>Drops a reference; the page returns to the free list when none remain.</summary>
    public void Release(int page)
    {
        if (_references[page] <= 0)
            throw new InvalidOperationException($"KV page {page} is released more often than it was referenced.");
        if (--_references[page] == 0)
            _free[_freeCount++] = page;
    }

    /// <summary>References held on a page (0 when free).</summary>
    public int References(int page) => _references[page];

    /// <summary>Copies the first <paramref name="count"/> positions of every layer from one page to another.</summary>
    public void CopyPositions(int source, int destination, int count)
    {
        if ((uint)count > (uint)PageSize)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"A page holds {PageSize} positions.");
        long bytes = count * _rowBytes;
        for (int layer = 0; layer < Layers; layer++)
        {
            var from = new ReadOnlySpan<byte>(RowAddress(layer, (long)source * PageSize), (int)bytes);
            from.CopyTo(new Span<byte>(RowAddress(layer, (long)destination * PageSize), (int)bytes));
        }
    }

    /// <inheritdoc/>
    public void Write(int layer, long slot, ReadOnlySpan<float> row)
    {
        if (row.Length != RowWidth)
            throw new ArgumentException($"A KV row has {RowWidth} values, got {row.Length}.", nameof(row));
        if (DType == KvCacheDType.F32)
            row.CopyTo(new Span<float>(RowAddress(layer, slot), RowWidth));
        else
            BFloat16.FromSingle(row, new Span<ushort>(RowAddress(layer, slot), RowWidth));
    }

    /// <inheritdoc/>
    public ReadOnlySpan<float> RowF32(int layer, long slot) =>
        DType == KvCacheDType.F32 ? new(RowAddress(layer, slot), RowWidth) : throw new InvalidOperationException("This KV cache stores BF16 rows.");

    /// <inheritdoc/>
    public ReadOnlySpan<ushort> RowBf16(int layer, long slot) =>
        DType == KvCacheDType.BF16 ? new(RowAddress(layer, slot), RowWidth) : throw new InvalidOperationException("This KV cache stores F32 rows.");

    /// <summary>Bytes one token takes in a pool of <paramref name="layers"/> layers of <paramref name="rowWidth"/> values.</summary>
    public static long BytesPerToken(int layers, int rowWidth, KvCacheDType dtype) =>
        (long)layers * rowWidth * (dtype == KvCacheDType.F32 ? sizeof(float) : sizeof(ushort));

    private byte* RowAddress(int layer, long slot)
    {
        if ((uint)layer >= (uint)Layers || (ulong)slot >= (ulong)CapacityTokens)
            throw new ArgumentOutOfRangeException(nameof(slot), $"KV slot {slot} of layer {layer} is outside the pool ({CapacityTokens} slots, {Layers} layers).");
        return _storage + layer * _layerStride + slot * _rowBytes;
    }

    private bool _disposed;

    /// <summary>Frees the storage. The engine loop must have stopped.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        NativeMemory.AlignedFree(_storage);
    }
}
