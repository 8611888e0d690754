namespace Ftransformers.Formats;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">Its element type.</param>
/// <param name="Shape">Its dimensions, outermost first.</param>
/// <param name="Offset">Start of its bytes, relative to the data section.</param>
/// <param name="ByteLength">Its size in bytes.</param>
public sealed record TensorInfo(string Name, TensorDType DType, long[] Shape, long Offset, long ByteLength)
{
    /// <summary>Number of elements (the product of the shape).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The shape as text, for messages.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
