using Ftransformers.Memory;
using Ftransformers.Model;

namespace Ftransformers.Inference;

/// <summary>
/// One sequence's MLA cache: per layer and position, the normalized <c>kv_lora_rank</c> latent followed by the
/// roped <c>qk_rope_head_dim</c> key, contiguous, in managed host memory. It grows as tokens are appended. (The serving
/// engine keeps its sequences in a paged cache the attention backend makes; this one serves single-sequence use such as
/// verification, with the CPU attention backend.)
/// </summary>
public sealed class SequenceKvCache : ILatentStore
{
    private static readonly int[] OnePage = [0];

    private readonly float[][] _layers;

    /// <summary>Values per token per layer (kv_lora_rank + qk_rope_head_dim).</summary>
    public int RowWidth { get; }

    /// <summary>Tokens whose entries are complete in every layer.</summary>
    public int Length { get; private set; }

    /// <summary>Longest sequence the cache may hold.</summary>
    public int MaxLength { get; }

    /// <summary>Creates an empty cache for a model.</summary>
    public SequenceKvCache(DeepSeekV3Config config)
    {
        RowWidth = config.KvLoraRank + config.QkRopeHeadDim;
        MaxLength = config.MaxPositionEmbeddings;
        _layers = new float[config.NumHiddenLayers][];
        for (int i = 0; i < _layers.Length; i++)
            _layers[i] = [];
    }

    /// <summary>The row of <paramref name="layer"/> at <paramref name="position"/>.</summary>
    public Span<float> Row(int layer, int position) => _layers[layer].AsSpan(position * RowWidth, RowWidth);

    /// <summary>Rows 0..<paramref name="count"/> of a layer, row-major.</summary>
    public ReadOnlySpan<float> Rows(int layer, int count) => _layers[layer].AsSpan(0, count * RowWidth);

    /// <summary>Makes room for <paramref name="count"/> more tokens before a forward pass writes them.</summary>
    internal void Reserve(int count)
    {
        int needed = Length + count;
        if (needed > MaxLength)
            throw new ArgumentOutOfRangeException(nameof(count), $"The sequence would hold {needed} tokens, beyond max_position_embeddings ({MaxLength}).");
        for (int i = 0; i < _layers.Length; i++)
            if (_layers[i].Length < needed * RowWidth)
                Array.Resize(ref _layers[i], Math.Min(MaxLength, Math.Max(needed, 2 * _layers[i].Length / RowWidth + 16)) * RowWidth);
    }

    // To attention the contiguous cache is a single page as long as the context: slot = position.
    internal int PageSize => MaxLength;

    internal IReadOnlyList<int> PageTable => OnePage;

    KvCacheDType ILatentStore.DType => KvCacheDType.F32;

    void ILatentStore.Write(int layer, long slot, ReadOnlySpan<float> row) => row.CopyTo(Row(layer, checked((int)slot)));

    ReadOnlySpan<float> ILatentStore.RowF32(int layer, long slot) => Row(layer, checked((int)slot));

    ReadOnlySpan<ushort> ILatentStore.RowBf16(int layer, long slot) => throw new InvalidOperationException("A SequenceKvCache stores F32 rows.");

    void ILatentStore.CopyPositions(long sourceSlot, long destinationSlot, int count)
    {
        foreach (float[] rows in _layers)
            rows.AsSpan(checked((int)sourceSlot * RowWidth), count * RowWidth).CopyTo(rows.AsSpan(checked((int)destinationSlot * RowWidth)));
    }

    /// <summary>Nothing to release: the rows are managed arrays.</summary>
    public void Dispose()
    {
    }

    /// <summary>Marks <paramref name="count"/> appended tokens complete.</summary>
    internal void Commit(int count) => Length += count;

    /// <summary>Forgets every token after the first <paramref name="length"/> (rolls back an interrupted step).</summary>
    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);
}
