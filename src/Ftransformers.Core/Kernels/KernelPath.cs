namespace Ftransformers.Kernels;

/// <summary>The instruction-set path a kernel takes; tests force each one and assert which one dispatch picks.</summary>
public enum KernelPath
{
    /// <summary>Plain C#, any CPU.</summary>
    Scalar,
    /// <summary>Portable <c>Vector128</c> (SSE on x86, NEON on ARM64).</summary>
    Vector128,
    /// <summary>ARM64 NEON widening multiplies (ARMv8.0).</summary>
    AdvSimd,
    /// <summary>ARM64 SDOT (ARMv8.2 dot product).</summary>
    Dp,
    /// <summary>x86 AVX2.</summary>
    Avx2,
    /// <summary>x86 AVX-VNNI: vpdpbusd on 256-bit vectors.</summary>
    AvxVnni,
    /// <summary>x86 AVX-512 F and BW on 512-bit vectors.</summary>
    Avx512,
}
