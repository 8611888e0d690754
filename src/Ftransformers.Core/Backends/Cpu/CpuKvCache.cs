using System.Runtime.InteropServices;
using Ftransformers.Kernels;
using Ftransformers.Memory;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// The CPU attention backend's MLA cache: per layer, <see cref="Slots"/> rows of latents in native memory, allocated
/// once; the OS commits pages as they are first written, so an unused tail costs address space only.
/// </summary>
internal sealed unsafe class CpuKvCache : ILatentStore
{
    private readonly byte* _storage;
    private readonly long _layerStride, _rowBytes;
    private bool _disposed;

    public CpuKvCache(int layers, int rowWidth, long slots, KvCacheDType dtype)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(layers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rowWidth, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        if (dtype is not (KvCacheDType.F32 or KvCacheDType.BF16))
            throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "The KV cache stores F32 or BF16.");
        (Layers, RowWidth, Slots, DType) = (layers, rowWidth, slots, dtype);
        _rowBytes = KvCachePool.BytesPerToken(1, rowWidth, dtype);
        _layerStride = slots * _rowBytes;
        _storage = (byte*)NativeMemory.AlignedAlloc((nuint)(_layerStride * layers), 64);
    }

    /// <summary>Layers of rows per slot.</summary>
    public int Layers { get; }

    /// <inheritdoc/>
    public int RowWidth { get; }

    /// <summary>Rows per layer.</summary>
    public long Slots { get; }

    /// <inheritdoc/>
    public KvCacheDType DType { get; }

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

    /// <inheritdoc/>
    public void CopyPositions(long sourceSlot, long destinationSlot, int count)
    {
        if (count < 0 || sourceSlot + count > Slots || destinationSlot + count > Slots)
            throw new ArgumentOutOfRangeException(nameof(count), $"Slots [{sourceSlot}, {sourceSlot + count}) and [{destinationSlot}, {destinationSlot + count}) must lie in the cache's {Slots}.");
        if (count == 0)
            return;
        long bytes = count * _rowBytes;
        for (int layer = 0; layer < Layers; layer++)
            Buffer.MemoryCopy(RowAddress(layer, sourceSlot), RowAddress(layer, destinationSlot), bytes, bytes);
    }

    private byte* RowAddress(int layer, long slot)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)layer >= (uint)Layers || (ulong)slot >= (ulong)Slots)
            throw new ArgumentOutOfRangeException(nameof(slot), $"KV slot {slot} of layer {layer} is outside the cache ({Slots} slots, {Layers} layers).");
        return _storage + layer * _layerStride + slot * _rowBytes;
    }

    /// <summary>Frees the storage; nothing may compute over it afterwards.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        NativeMemory.AlignedFree(_storage);
    }
}
