using Ftransformers.Tokenization;
using Ftransformers.Model;
using Ftransformers.Memory;
using Ftransformers.Inference;

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

    /// <summary>Pin each compute thread to a core of its own (Linux); off leaves placement to the OS.</summary>
    public bool PinThreads { get; init; } = true;

    /// <summary>NUMA nodes the compute threads and routed experts are split across (<c>--numa-nodes</c>); null: the machine's.</summary>
    public int? NumaNodes { get; init; }

    /// <summary>The attention backend by name (<c>--attention-backend</c>).</summary>
    public string AttentionBackend { get; init; } = BackendRegistry.Cpu;

    /// <summary>The routed-experts backend by name (<c>--expert-backend</c>).</summary>
    public string ExpertBackend { get; init; } = BackendRegistry.Cpu;

    /// <summary>The model-loading part of these options.</summary>
    public ModelLoadOptions ToModelLoadOptions() => new()
    {
        Precision = Precision, CpuThreads = CpuThreads, PinThreads = PinThreads, NumaNodes = NumaNodes,
        AttentionBackend = AttentionBackend, ExpertBackend = ExpertBackend, Profile = Profile,
    };

    /// <summary>Times the model's decode steps by part when set (benchmarks); null times nothing.</summary>
    public ForwardProfile? Profile { get; init; }

    /// <summary>
    /// Token slots of the KV cache pool, shared by running requests and cached prefixes, allocated once at load
    /// (<c>--max-total-tokens</c>). Null sizes it from memory: what a quarter of the memory left after loading the
    /// model holds (physical memory, or the container's limit, less what the process holds), at most the model's
    /// context and at least 4096 tokens (or the context, if shorter). The pool is rounded up to whole pages. A token takes layers x (kv_lora_rank + qk_rope_head_dim) values:
    /// about 140 KB in F32 and 70 KB in BF16 for DeepSeek-V3 (61 x 576). A request longer than the pool ends with
    /// <see cref="FinishReason.Length"/>.
    /// </summary>
    public int? MaxTotalTokens { get; init; }

    /// <summary>
    /// Most prompt tokens prefilled in one step (<c>--chunked-prefill-size</c>): longer prompts are prefilled in
    /// chunks of this size while the running requests keep decoding, one token each per step. Smaller values keep
    /// decoding smoother beside long prompts; larger ones prefill faster. -1 turns chunking off: a prompt is
    /// prefilled in one step. A step never prefills more than the pool's free pages hold, whatever this value.
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

    /// <summary>
    /// Most tokens a request may hold, prompt and output (<c>--context-length</c>); null is the model's context. It may
    /// only shorten the model's context, never extend it.
    /// </summary>
    public int? ContextLength { get; init; }

    /// <summary>
    /// Share of the machine's memory (or the container's limit) that the weights and the KV pool may take together
    /// (<c>--mem-fraction-static</c>, as SGLang names it); sizes the pool when <see cref="MaxTotalTokens"/> is unset.
    /// Null keeps the default: a quarter of the memory left after loading.
    /// </summary>
    public double? MemoryFractionStatic { get; init; }

    /// <summary>
    /// The chat template conversations are rendered with, and tool calls written in (<c>--chat-template</c>); null
    /// takes the tokenizer's (read from <c>tokenizer_config.json</c>), DeepSeek-V3's for the byte tokenizer.
    /// </summary>
    public ChatFormat? ChatFormat { get; init; }

    /// <summary>Positions per KV cache page (<c>--page-size</c>).</summary>
    public int KvCachePageSize { get; init; } = 16;

    /// <summary>Most prompt tokens one step prefills: <see cref="ChunkedPrefillSize"/>, or no bound when it is -1.</summary>
    internal int PrefillTokensPerStep => ChunkedPrefillSize == -1 ? int.MaxValue : ChunkedPrefillSize;

    /// <summary>
    /// Every problem with the serving and loading values, each message starting with the option's name; empty when
    /// they are valid. The one rule for these options: hosts map their own options here and report these.
    /// </summary>
    public IReadOnlyList<(string Option, string Message)> Problems()
    {
        var problems = new List<(string, string)>();
        void Add(string option, string rule) => problems.Add((option, $"{option} {rule}"));
        foreach ((string option, string rule) in ToModelLoadOptions().Problems())
            Add(option, rule);
        if (MaxTotalTokens is < 2)
            Add(nameof(MaxTotalTokens), $"must be at least 2 (a prompt token and a generated one), or unset to size the pool from memory (got {MaxTotalTokens}).");
        if (ChunkedPrefillSize is < 1 and not -1)
            Add(nameof(ChunkedPrefillSize), $"must be a positive token count, or -1 to disable chunking (got {ChunkedPrefillSize}).");
        if (MaxRunningRequests < 1)
            Add(nameof(MaxRunningRequests), $"must be at least 1 (got {MaxRunningRequests}).");
        if (MaxWaitingRequests < 1)
            Add(nameof(MaxWaitingRequests), $"must be at least 1: every request waits before it runs (got {MaxWaitingRequests}).");
        if (!Enum.IsDefined(KvCacheDType))
            Add(nameof(KvCacheDType), $"must be F32 or BF16 (got {KvCacheDType}).");
        if (KvCachePageSize < 1)
            Add(nameof(KvCachePageSize), $"must be at least 1 (got {KvCachePageSize}).");
        if (ContextLength is < 2)
            Add(nameof(ContextLength), $"must be at least 2 (a prompt token and a generated one), or unset for the model's context (got {ContextLength}).");
        if (MemoryFractionStatic is { } fraction && !(fraction > 0 && fraction <= 1))
            Add(nameof(MemoryFractionStatic), $"must be in (0, 1] (got {fraction}).");
        return problems;
    }

    /// <summary>Throws for the first value out of range, naming the option (<see cref="Problems"/> lists them all).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        if (Problems() is [var (option, message), ..])
            throw new ArgumentOutOfRangeException(option, message);
    }
}
