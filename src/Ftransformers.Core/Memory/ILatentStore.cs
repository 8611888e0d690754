namespace Ftransformers.Memory;

/// <summary>
/// Where attention keeps the MLA cache: per layer and slot, one row of <c>kv_lora_rank</c> latent values followed by
/// <c>qk_rope_head_dim</c> roped key values. Rows are written in F32 and read back in the store's precision. An
/// attention backend makes the stores it computes over (<c>IAttentionBackend.CreateKvCache</c>), in its own memory.
/// </summary>
public interface ILatentStore : IDisposable
{
    /// <summary>Values per row (kv_lora_rank + qk_rope_head_dim).</summary>
    int RowWidth { get; }

    /// <summary>The precision rows are read back in; selects <see cref="RowF32"/> or <see cref="RowBf16"/>.</summary>
    KvCacheDType DType { get; }

    /// <summary>Stores a row (converting to the store's precision).</summary>
    void Write(int layer, long slot, ReadOnlySpan<float> row);

    /// <summary>A stored row of an F32 store.</summary>
    ReadOnlySpan<float> RowF32(int layer, long slot);

    /// <summary>A stored row of a BF16 store, as BF16 bits.</summary>
    ReadOnlySpan<ushort> RowBf16(int layer, long slot);

    /// <summary>Copies the rows of <paramref name="count"/> consecutive slots, in every layer, to other slots.</summary>
    void CopyPositions(long sourceSlot, long destinationSlot, int count);
}
