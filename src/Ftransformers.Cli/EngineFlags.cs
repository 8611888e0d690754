using System.CommandLine;
using Ftransformers.Hosting;
using Ftransformers.Memory;
using Ftransformers.Tokenization;

namespace Ftransformers.Cli;

/// <summary>
/// The engine flags <c>serve</c> and an in-process <c>bench</c> share, named as SGLang names them, and how they
/// become <see cref="FtransformersOptions"/>.
/// </summary>
internal sealed class EngineFlags
{
    public Option<string?> Tokenizer { get; } = new("--tokenizer-path") { Description = "Tokenizer folder (tokenizer.json); defaults to the model folder, else a byte-level tokenizer." };
    public Option<string?> Quantization { get; } = new("--quantization") { Description = $"Precision preset: {string.Join(", ", FtransformersOptions.PrecisionPresets)}." };
    public Option<int?> CpuInfer { get; } = new("--cpuinfer") { Description = "Threads for CPU compute (default: every core)." };
    public Option<bool?> PinThreads { get; } = new("--pin-threads") { Description = "Pin each compute thread to a core of its own: true (default) or false." };
    public Option<int?> ChunkedPrefillSize { get; } = new("--chunked-prefill-size") { Description = "Most prompt tokens prefilled per step; -1 disables chunking." };
    public Option<int?> MaxTotalTokens { get; } = new("--max-total-tokens") { Description = "KV cache pool size in tokens (default: a quarter of the memory left after loading, at most the context)." };
    public Option<int?> MaxRunningRequests { get; } = new("--max-running-requests") { Description = "Most requests decoded together." };
    public Option<int?> MaxWaitingRequests { get; } = new("--max-waiting-requests", "--max-queued-requests") { Description = "Most queued requests before new ones are refused (HTTP 503)." };
    public Option<bool> DisableRadixCache { get; } = new("--disable-radix-cache") { Description = "Turn off prefix (radix) caching." };
    public Option<string?> KvCacheDType { get; } = new("--kv-cache-dtype") { Description = "KV cache storage: auto or f32 (default, exact), bf16 (half the memory). FP8 is refused.", Validators = { CheckKvCacheDType } };
    public Option<string?> ChatTemplate { get; } = new("--chat-template") { Description = "Chat template: deepseek-v3 (V3 and R1) or deepseek-v3.1; default: the one in the tokenizer folder's tokenizer_config.json." };
    public Option<int?> ContextLength { get; } = new("--context-length") { Description = "Most tokens per request, prompt and output (default: the model's context; it may only be shortened)." };
    public Option<double?> MemFractionStatic { get; } = new("--mem-fraction-static") { Description = "Share of memory the weights and KV pool take together; sizes the pool when --max-total-tokens is unset." };
    public Option<int?> PageSize { get; } = new("--page-size") { Description = "Positions per KV cache page." };
    public Option<int?> NumaNodes { get; } = new("--numa-nodes") { Description = "NUMA nodes to split compute threads and routed experts across (default: the machine's; more splits the CPUs into groups; 1 turns it off)." };
    public Option<string?> AttentionBackend { get; } = new("--attention-backend") { Description = "Attention backend by name (default: cpu)." };
    public Option<string?> ExpertBackend { get; } = new("--expert-backend") { Description = "Routed-experts backend by name (default: cpu)." };

    public IEnumerable<Option> All => [Tokenizer, Quantization, CpuInfer, PinThreads, ChunkedPrefillSize, MaxTotalTokens, MaxRunningRequests, MaxWaitingRequests,
        DisableRadixCache, KvCacheDType, ChatTemplate, ContextLength, MemFractionStatic, PageSize, NumaNodes, AttentionBackend, ExpertBackend];

    public EngineFlags() => ChatTemplate.AcceptOnlyFromAmong(ChatTemplates);

    /// <summary>The names <c>--chat-template</c> takes.</summary>
    public static readonly string[] ChatTemplates = ["deepseek-v3", "deepseek-v3.1"];

    /// <summary>The chat format a <c>--chat-template</c> name stands for (null: not given).</summary>
    public static ChatFormat? ChatFormatOf(string? name) => name switch
    {
        null => null,
        "deepseek-v3.1" => ChatFormat.DeepSeekV31,
        _ => ChatFormat.DeepSeekV3,
    };

    public void Apply(ParseResult parse, FtransformersOptions options)
    {
        options.TokenizerPath = parse.GetValue(Tokenizer);
        options.Precision = parse.GetValue(Quantization);
        options.CpuThreads = parse.GetValue(CpuInfer);
        options.ChunkedPrefillSize = parse.GetValue(ChunkedPrefillSize);
        options.MaxTotalTokens = parse.GetValue(MaxTotalTokens);
        options.MaxRunningRequests = parse.GetValue(MaxRunningRequests);
        options.MaxWaitingRequests = parse.GetValue(MaxWaitingRequests);
        options.EnablePrefixCache = !parse.GetValue(DisableRadixCache);
        options.KvCacheDType = ParseKvCacheDType(parse.GetValue(KvCacheDType)).Value;
        options.KvCachePageSize = parse.GetValue(PageSize);
        options.ContextLength = parse.GetValue(ContextLength);
        options.ChatFormat = ChatFormatOf(parse.GetValue(ChatTemplate));
        options.MemoryFractionStatic = parse.GetValue(MemFractionStatic);
        options.PinThreads = parse.GetValue(PinThreads);
        options.NumaNodes = parse.GetValue(NumaNodes);
        options.AttentionBackend = parse.GetValue(AttentionBackend);
        options.ExpertBackend = parse.GetValue(ExpertBackend);
    }

    // SGLang's spellings: auto (the default), bf16, and the fp8 kinds this engine does not store.
    private static (KvCacheDType? Value, string? Error) ParseKvCacheDType(string? value) => value?.ToLowerInvariant() switch
    {
        null or "auto" => (null, null),
        "f32" or "fp32" or "float32" => (Memory.KvCacheDType.F32, null),
        "bf16" or "bfloat16" => (Memory.KvCacheDType.BF16, null),
        string fp8 when fp8.StartsWith("fp8", StringComparison.Ordinal) => (null, $"--kv-cache-dtype {value}: an FP8 KV cache is not supported; use bf16 (half of f32's memory) or f32."),
        _ => (null, $"--kv-cache-dtype '{value}' is unknown; expected auto, f32 or bf16."),
    };

    private static void CheckKvCacheDType(System.CommandLine.Parsing.OptionResult result)
    {
        if (ParseKvCacheDType(result.GetValueOrDefault<string?>()).Error is { } error)
            result.AddError(error);
    }

    /// <summary>Writes each problem with <paramref name="options"/> to stderr; true when there were none.</summary>
    public static async Task<bool> CheckAsync(FtransformersOptions options, TextWriter error)
    {
        IReadOnlyList<string> errors = options.Validate();
        foreach (string problem in errors)
            await error.WriteLineAsync($"error: {problem}");
        return errors.Count == 0;
    }
}
