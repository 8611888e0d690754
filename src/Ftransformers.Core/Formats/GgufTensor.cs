namespace Ftransformers.Formats;

/// <summary>A tensor of a GGUF file: where its bytes are and how they are laid out.</summary>
/// <param name="Name">llama.cpp's tensor name (<c>blk.0.attn_q_a.weight</c>).</param>
/// <param name="Type">The ggml type of its elements.</param>
/// <param name="Dimensions">Its sizes in ggml's order: the first is the row length (the fastest-varying).</param>
/// <param name="Part">Which file of a split set holds it (0 for a single file).</param>
/// <param name="Offset">Its first byte, from the start of that file's data section.</param>
/// <param name="ByteLength">Its bytes.</param>
public sealed record GgufTensor(string Name, GgmlType Type, long[] Dimensions, int Part, long Offset, long ByteLength)
{
    /// <summary>Values it holds.</summary>
    public long ElementCount => Dimensions.Aggregate(1L, (a, b) => a * b);
}
