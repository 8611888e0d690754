using System.CommandLine;
using Ftransformers.Hosting;

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
    public Option<int?> ChunkedPrefillSize { get; } = new("--chunked-prefill-size") { Description = "Most prompt tokens prefilled per step; -1 disables chunking." };
    public Option<int?> MaxTotalTokens { get; } = new("--max-total-tokens") { Description = "KV cache pool size in tokens." };
    public Option<int?> MaxRunningRequests { get; } = new("--max-running-requests") { Description = "Most requests decoded together." };
    public Option<int?> MaxWaitingRequests { get; } = new("--max-waiting-requests") { Description = "Most queued requests before new ones are refused (HTTP 503)." };
    public Option<bool> DisableRadixCache { get; } = new("--disable-radix-cache") { Description = "Turn off prefix (radix) caching." };

    public IEnumerable<Option> All => [Tokenizer, Quantization, CpuInfer, ChunkedPrefillSize, MaxTotalTokens, MaxRunningRequests, MaxWaitingRequests, DisableRadixCache];

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
