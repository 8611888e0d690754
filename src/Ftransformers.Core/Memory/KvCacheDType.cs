namespace Ftransformers.Memory;

/// <summary>Storage precision of the KV cache (the MLA latents). Attention always computes in F32.</summary>
public enum KvCacheDType
{
    /// <summary>Four bytes per value: the cache holds exactly what the F32 model computed.</summary>
    F32,

    /// <summary>Two bytes per value (rounded to nearest even): half the memory, about 3 significant digits.</summary>
    BF16,
}
