using Ftransformers.Model;
using Ftransformers.Memory;

namespace Ftransformers.Generation;

/// <summary>
/// How a session is loaded and run. The serving options mirror SGLang's server flags (named in each summary) so a
/// host can expose them under the same names.
/// </summary>
public sealed record InferenceSessionOptions
{
    /// <summary>A checkpoint folder, or <c>synthetic:NAME</c> for a built-in random-weight model.</summary>
    public string Model { get; init; } = "synthetic:tiny";

    /// <summary>Tokenizer folder; null uses the model folder's tokenizer.json, else the byte tokenizer.</summary>
    public string? Tokenizer { get; init; }

    /// <summary>Weight formats; null computes in F32 over the stored weights (a converted checkpoint loads as converted).</summary>
    public Precision? Precision { get; init; }

    /// <summary>Threads for the CPU kernels, the engine's own included (server flag <c>--cpuinfer</c>).</summary>
    public int CpuThreads { get; init; } = Environment.ProcessorCount;

    /// <summary>The model-loading part of these options.</summary>
    public ModelLoadOptions ToModelLoadOptions() => new() { Precision = Precision, CpuThreads = CpuThreads, Profile = Profile };

    /// <summary>Times the model's decode steps by part when set (benchmarks); null times nothing.</summary>
    public ForwardProfile? Profile { get; init; }

    /// <summary>
    /// Token slots of the KV cache pool, shared by running requests and cached prefixes, allocated once at load
    /// (<c>--max-total-tokens</c>). Null: the model's context length, so one full-length request always fits.
    /// The pool is rounded up to whole pages. A token takes layers x (kv_lora_rank + qk_rope_head_dim) values:
    /// about 140 KB in F32 and 70 KB in BF16 for DeepSeek-V3 (61 x 576). A request longer than the pool ends with
    /// <see cref="FinishReason.Length"/>.
    /// </summary>
    public int? MaxTotalTokens { get; init; }

    /// <summary>
    /// Most prompt tokens prefilled in one step (<c>--chunked-prefill-size</c>): longer prompts are prefilled in
    /// chunks of this size while the running requests keep decoding, one token each per step. Smaller values keep
    /// decoding smoother beside long prompts; larger ones prefill faster.
    /// </summary>
    public int ChunkedPrefillSize { get; init; } = 2048;

    /// <summary>Most requests prefilling or decoding at once (<c>--max-running-requests</c>); the rest wait.</summary>
    public int MaxRunningRequests { get; init; } = 32;

    /// <summary>
    /// Most requests waiting for admission (<c>--max-queued-requests</c>); a request beyond this is rejected with
    /// <see cref="QueueFullException"/>.
    /// </summary>
    public int MaxWaitingRequests { get; init; } = 256;

    /// <summary>
    /// Reuse the KV of cached prefixes (system prompts, earlier turns, templates) across requests; off is
    /// <c>--disable-radix-cache</c>.
    /// </summary>
    public bool EnablePrefixCache { get; init; } = true;

    /// <summary>
    /// Storage precision of the KV cache (<c>--kv-cache-dtype</c>): F32 keeps exactly what the model computed; BF16
    /// halves the memory per token.
    /// </summary>
    public KvCacheDType KvCacheDType { get; init; } = KvCacheDType.F32;

    /// <summary>Positions per KV cache page (<c>--page-size</c>).</summary>
    public int KvCachePageSize { get; init; } = 16;

    /// <summary>Throws when a value is out of range, naming the option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Model))
            throw new ArgumentException("Model must name a checkpoint folder or synthetic:NAME.", nameof(Model));
        ToModelLoadOptions().Validate();
        if (MaxTotalTokens is < 2)
            throw new ArgumentOutOfRangeException(nameof(MaxTotalTokens), MaxTotalTokens, "MaxTotalTokens must be at least 2 (a prompt token and a generated one), or null for the model's context length.");
        if (ChunkedPrefillSize < 1)
            throw new ArgumentOutOfRangeException(nameof(ChunkedPrefillSize), ChunkedPrefillSize, "ChunkedPrefillSize must be at least 1 token.");
        if (MaxRunningRequests < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxRunningRequests), MaxRunningRequests, "MaxRunningRequests must be at least 1.");
        if (MaxWaitingRequests < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxWaitingRequests), MaxWaitingRequests, "MaxWaitingRequests must be at least 1 (every request waits before it runs).");
        if (!Enum.IsDefined(KvCacheDType))
            throw new ArgumentOutOfRangeException(nameof(KvCacheDType), KvCacheDType, "KvCacheDType must be F32 or BF16.");
        if (KvCachePageSize < 1)
            throw new ArgumentOutOfRangeException(nameof(KvCachePageSize), KvCachePageSize, "KvCachePageSize must be at least 1.");
    }
}
