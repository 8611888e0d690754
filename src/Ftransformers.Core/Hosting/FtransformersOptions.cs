using Ftransformers.Generation;
using Ftransformers.Memory;
using Ftransformers.Inference;

namespace Ftransformers.Hosting;

/// <summary>
/// How a hosted session is loaded and run: what <c>services.AddFtransformers(...)</c> binds and validates at
/// start-up, and what the server's command-line flags set.
/// </summary>
public sealed class FtransformersOptions
{
    /// <summary>The configuration section <c>AddFtransformers(IConfiguration)</c> conventionally binds.</summary>
    public const string SectionName = "Ftransformers";

    /// <summary>Precision presets <see cref="Precision"/> accepts: <c>auto</c> (the checkpoint's own) and the engine's presets.</summary>
    public static IReadOnlyList<string> PrecisionPresets { get; } = ["auto", .. Model.Precision.PresetNames];

    /// <summary>A checkpoint folder, or <c>synthetic:NAME</c> for a built-in random-weight model. Required.</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>Tokenizer folder; null uses the model folder's tokenizer.json, else the byte tokenizer.</summary>
    public string? TokenizerPath { get; set; }

    /// <summary>The model id reported to clients (<c>/v1/models</c>, chat responses); null derives it from <see cref="ModelPath"/>.</summary>
    public string? ServedModelName { get; set; }

    /// <summary>Precision preset, one of <see cref="PrecisionPresets"/>; null or <c>auto</c> keeps the checkpoint's own.</summary>
    public string? Precision { get; set; }

    /// <summary>Threads for CPU compute; null uses every core.</summary>
    public int? CpuThreads { get; set; }

    /// <summary>Most prompt tokens prefilled in one step; -1 prefills a whole prompt at once; null keeps the engine's default.</summary>
    public int? ChunkedPrefillSize { get; set; }

    /// <summary>Token slots of the KV cache pool (all running sequences and cached prefixes); null sizes it from memory.</summary>
    public int? MaxTotalTokens { get; set; }

    /// <summary>Most requests decoded together; null keeps the engine's default.</summary>
    public int? MaxRunningRequests { get; set; }

    /// <summary>Most requests queued behind the running ones before new ones are refused; null keeps the engine's default.</summary>
    public int? MaxWaitingRequests { get; set; }

    /// <summary>Reuse the KV of shared prompt prefixes (the radix cache).</summary>
    public bool EnablePrefixCache { get; set; } = true;

    /// <summary>Storage precision of the KV cache (F32 or BF16); null keeps the engine's default (F32).</summary>
    public KvCacheDType? KvCacheDType { get; set; }

    /// <summary>Positions per KV cache page; null keeps the engine's default.</summary>
    public int? KvCachePageSize { get; set; }

    /// <summary>Pin each compute thread to a core of its own (Linux); null keeps the engine's default (on).</summary>
    public bool? PinThreads { get; set; }

    /// <summary>NUMA nodes the compute threads and routed experts are split across; null uses the machine's nodes.</summary>
    public int? NumaNodes { get; set; }

    /// <inheritdoc cref="InferenceSessionOptions.ChatFormat"/>
    public Tokenization.ChatFormat? ChatFormat { get; set; }

    /// <inheritdoc cref="InferenceSessionOptions.ContextLength"/>
    public int? ContextLength { get; set; }

    /// <inheritdoc cref="InferenceSessionOptions.MemoryFractionStatic"/>
    public double? MemoryFractionStatic { get; set; }

    /// <summary>The attention backend by name; null keeps the engine's default (<c>cpu</c>).</summary>
    public string? AttentionBackend { get; set; }

    /// <summary>The routed-experts backend by name; null keeps the engine's default (<c>cpu</c>).</summary>
    public string? ExpertBackend { get; set; }

    /// <summary>Times the model's decode steps by part when set (the in-process bench); not read from configuration.</summary>
    public ForwardProfile? Profile { get; set; }

    /// <summary>The name clients see: <see cref="ServedModelName"/>, else the model folder's name or the synthetic name.</summary>
    public string EffectiveModelName =>
        !string.IsNullOrWhiteSpace(ServedModelName) ? ServedModelName
        : ModelPath.StartsWith(Model.SyntheticModels.Prefix, StringComparison.Ordinal) ? ModelPath
        : Path.GetFileName(Path.TrimEndingDirectorySeparator(ModelPath));

    /// <summary>
    /// Every problem with the values, each naming the option; empty when they are valid. Beyond the host's own
    /// options, these are the session's rules (<see cref="InferenceSessionOptions.Problems"/>), applied to the
    /// options these map to.
    /// </summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(ModelPath))
            errors.Add($"{nameof(ModelPath)} is required: a checkpoint folder or synthetic:NAME.");
        if (ServedModelName is { } name && string.IsNullOrWhiteSpace(name))
            errors.Add($"{nameof(ServedModelName)} must not be blank.");
        bool knownPrecision = Precision == null || PrecisionPresets.Contains(Precision, StringComparer.Ordinal);
        if (!knownPrecision)
            errors.Add($"{nameof(Precision)} '{Precision}' is unknown; known: {string.Join(", ", PrecisionPresets)}.");
        errors.AddRange(ToSessionOptions(knownPrecision ? ParsePrecision() : null).Problems().Select(p => p.Message));
        return errors;
    }

    private Model.Precision? ParsePrecision() => Precision is null or "auto" ? null : Model.Precision.Parse(Precision);

    /// <summary>The session options these stand for.</summary>
    public InferenceSessionOptions ToSessionOptions() => ToSessionOptions(ParsePrecision());

    private InferenceSessionOptions ToSessionOptions(Model.Precision? precision)
    {
        var defaults = new InferenceSessionOptions();
        return new InferenceSessionOptions
        {
            Model = ModelPath,
            Tokenizer = TokenizerPath,
            Precision = precision,
            CpuThreads = CpuThreads ?? defaults.CpuThreads,
            PinThreads = PinThreads ?? defaults.PinThreads,
            NumaNodes = NumaNodes,
            AttentionBackend = AttentionBackend ?? defaults.AttentionBackend,
            ExpertBackend = ExpertBackend ?? defaults.ExpertBackend,
            ChunkedPrefillSize = ChunkedPrefillSize ?? defaults.ChunkedPrefillSize,
            MaxTotalTokens = MaxTotalTokens,
            ContextLength = ContextLength,
            ChatFormat = ChatFormat,
            MemoryFractionStatic = MemoryFractionStatic,
            MaxRunningRequests = MaxRunningRequests ?? defaults.MaxRunningRequests,
            MaxWaitingRequests = MaxWaitingRequests ?? defaults.MaxWaitingRequests,
            EnablePrefixCache = EnablePrefixCache,
            KvCacheDType = KvCacheDType ?? defaults.KvCacheDType,
            KvCachePageSize = KvCachePageSize ?? defaults.KvCachePageSize,
            Profile = Profile,
        };
    }
}
