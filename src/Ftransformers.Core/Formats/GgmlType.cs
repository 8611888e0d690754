namespace Ftransformers.Formats;

/// <summary>ggml's tensor types, numbered as GGUF files store them.</summary>
public enum GgmlType : uint
{
#pragma warning disable CS1591 // the names are ggml's own
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
#pragma warning restore CS1591
}

/// <summary>The block layout of each <see cref="GgmlType"/>: how many values a block holds and its bytes.</summary>
public static class GgmlTypes
{
    /// <summary>Values per block and bytes per block, or null for a type number this reader does not know.</summary>
    public static (int Values, int Bytes)? Block(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.I32 => (1, 4),
        GgmlType.F16 or GgmlType.BF16 or GgmlType.I16 => (1, 2),
        GgmlType.F64 or GgmlType.I64 => (1, 8),
        GgmlType.I8 => (1, 1),
        GgmlType.Q4_0 or GgmlType.IQ4_NL => (32, 18),   // f16 scale, 16 bytes of nibbles
        GgmlType.Q4_1 => (32, 20),
        GgmlType.Q5_0 => (32, 22),
        GgmlType.Q5_1 => (32, 24),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q8_1 => (32, 36),
        GgmlType.MXFP4 => (32, 17),
        GgmlType.Q2_K => (256, 84),
        GgmlType.Q3_K or GgmlType.IQ3_S => (256, 110),
        GgmlType.Q4_K => (256, 144),
        GgmlType.Q5_K => (256, 176),
        GgmlType.Q6_K => (256, 210),
        GgmlType.Q8_K => (256, 292),
        GgmlType.IQ2_XXS or GgmlType.TQ2_0 => (256, 66),
        GgmlType.IQ2_XS => (256, 74),
        GgmlType.IQ2_S => (256, 82),
        GgmlType.IQ3_XXS => (256, 98),
        GgmlType.IQ1_S => (256, 50),
        GgmlType.IQ1_M => (256, 56),
        GgmlType.IQ4_XS => (256, 136),
        GgmlType.TQ1_0 => (256, 54),
        _ => null,
    };

    /// <summary>Types <see cref="Dequantize"/> decodes.</summary>
    public static IReadOnlyList<GgmlType> Decoded { get; } =
        [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    /// <summary>Decodes <paramref name="bytes"/> of <paramref name="type"/> into floats, value for value as llama.cpp does.</summary>
    /// <exception cref="NotSupportedException">The type is not among <see cref="Decoded"/>.</exception>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> bytes, Span<float> values)
    {
        switch (type)
        {
            case GgmlType.F32: System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(values); break;
            case GgmlType.F16: Kernels.Float16.ToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes), values); break;
            case GgmlType.BF16: Kernels.BFloat16.ToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes), values); break;
            case GgmlType.Q8_0: Kernels.GgmlBlocks.DequantizeQ8_0(bytes, values); break;
            case GgmlType.Q4_0: Kernels.GgmlBlocks.DequantizeQ4_0(bytes, values); break;
            case GgmlType.Q4_K: Kernels.GgmlBlocks.DequantizeQ4_K(bytes, values); break;
            case GgmlType.Q5_K: Kernels.GgmlBlocks.DequantizeQ5_K(bytes, values); break;
            case GgmlType.Q6_K: Kernels.GgmlBlocks.DequantizeQ6_K(bytes, values); break;
            default: throw new NotSupportedException($"ggml type {type} is not decoded; decoded: {string.Join(", ", Decoded)}.");
        }
    }
}
