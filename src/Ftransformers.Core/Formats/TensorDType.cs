namespace Ftransformers.Formats;

/// <summary>Element types a safetensors checkpoint may hold.</summary>
public enum TensorDType
{
    /// <summary>IEEE 754 single precision.</summary>
    F32,
    /// <summary>IEEE 754 half precision.</summary>
    F16,
    /// <summary>Brain float 16 (the upper half of an F32).</summary>
    BF16,
    /// <summary>FP8 with 4 exponent and 3 mantissa bits, as in DeepSeek-V3's official release.</summary>
    F8_E4M3,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>Unsigned 8-bit integer (packed quantized data).</summary>
    U8,
}

/// <summary>Names and sizes of <see cref="TensorDType"/> values as safetensors writes them.</summary>
public static class TensorDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 or TensorDType.I32 => 4,
        TensorDType.F16 or TensorDType.BF16 or TensorDType.I16 => 2,
        TensorDType.F8_E4M3 or TensorDType.I8 or TensorDType.U8 => 1,
        TensorDType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown tensor dtype."),
    };

    /// <summary>Parses a safetensors dtype string; returns false for dtypes this engine does not read.</summary>
    public static bool TryParse(string text, out TensorDType dtype) => Enum.TryParse(text, ignoreCase: false, out dtype) && Enum.IsDefined(dtype);

    /// <summary>The safetensors spelling of a dtype.</summary>
    public static string Name(TensorDType dtype) => dtype.ToString();
}
