using System.Runtime.InteropServices;

namespace Ftransformers.Tests.Reference;

/// <summary>
/// llama.cpp's ggml, loaded from LLamaSharp's CPU backend (its portable no-AVX build): each type's reference
/// quantizer (<c>from_float_ref</c>) and dequantizer (<c>to_float</c>) from <c>ggml_get_type_traits</c>.
/// </summary>
internal static unsafe class GgmlReference
{
    private static readonly Lazy<nint> Library = new(() =>
    {
        string path = Directory.GetFiles(AppContext.BaseDirectory, "libggml-base.so", SearchOption.AllDirectories)
            .FirstOrDefault(p => p.Contains("noavx", StringComparison.Ordinal))
            ?? throw new FileNotFoundException($"libggml-base.so (noavx) is not under {AppContext.BaseDirectory}; LLamaSharp.Backend.Cpu should have put it there.");
        return NativeLibrary.Load(path);
    });

    // struct ggml_type_traits { const char* type_name; int64 blck_size; int64 blck_size_interleave; size_t type_size;
    //                           bool is_quantized; to_float; from_float_ref; }
    private static byte* Traits(int type) => ((delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(Library.Value, "ggml_get_type_traits"))(type);

    /// <summary>Values per block and bytes per block of <paramref name="type"/>, as ggml declares them.</summary>
    public static (long Values, long Bytes) Block(int type)
    {
        byte* traits = Traits(type);
        return (*(long*)(traits + 8), *(long*)(traits + 24));
    }

    /// <summary>Quantizes <paramref name="values"/> (whole blocks) with ggml's reference quantizer.</summary>
    public static byte[] Quantize(int type, float[] values)
    {
        byte* traits = Traits(type);
        long block = *(long*)(traits + 8), size = *(long*)(traits + 24);
        var blocks = new byte[values.Length / block * size];
        var quantize = (delegate* unmanaged<float*, void*, long, void>)*(nint*)(traits + 48);
        fixed (float* x = values)
        fixed (byte* y = blocks)
            quantize(x, y, values.Length);
        return blocks;
    }

    /// <summary>Dequantizes <paramref name="count"/> values with ggml's dequantizer.</summary>
    public static float[] Dequantize(int type, byte[] blocks, int count)
    {
        var values = new float[count];
        var dequantize = (delegate* unmanaged<void*, float*, long, void>)*(nint*)(Traits(type) + 40);
        fixed (byte* x = blocks)
        fixed (float* y = values)
            dequantize(x, y, count);
        return values;
    }
}
