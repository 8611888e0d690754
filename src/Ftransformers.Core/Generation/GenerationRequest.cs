using Ftransformers.Tokenization;

namespace Ftransformers.Generation;

/// <summary>
/// One generation: the input (exactly one of <see cref="Prompt"/>, <see cref="Messages"/> or
/// <see cref="PromptTokens"/>), how to sample, and when to stop.
/// </summary>
public sealed record GenerationRequest
{
    /// <summary>Raw text, encoded after the BOS token.</summary>
    public string? Prompt { get; init; }

    /// <summary>A conversation, rendered with the DeepSeek chat format and a generation prompt.</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    /// <summary>Token ids, used as given (no BOS added).</summary>
    public IReadOnlyList<int>? PromptTokens { get; init; }

    /// <summary>Most tokens to generate.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>How tokens are drawn.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>Strings that end generation; they are not part of the output.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>Keep generating past the end-of-sentence token (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Creates a request from raw text.</summary>
    public static GenerationRequest FromPrompt(string prompt, int maxTokens = 256) => new() { Prompt = prompt, MaxTokens = maxTokens };

    /// <summary>Creates a request from a conversation.</summary>
    public static GenerationRequest FromMessages(IReadOnlyList<ChatMessage> messages, int maxTokens = 256) => new() { Messages = messages, MaxTokens = maxTokens };

    /// <summary>Throws when the request is malformed, naming the field at fault.</summary>
    public void Validate()
    {
        int inputs = (Prompt != null ? 1 : 0) + (Messages != null ? 1 : 0) + (PromptTokens != null ? 1 : 0);
        if (inputs != 1)
            throw new ArgumentException("A request needs exactly one of Prompt, Messages or PromptTokens.");
        if (Messages is { Count: 0 })
            throw new ArgumentException("Messages must not be empty.", nameof(Messages));
        if (PromptTokens is { Count: 0 })
            throw new ArgumentException("PromptTokens must not be empty.", nameof(PromptTokens));
        if (MaxTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, "max_tokens must be at least 1.");
        ArgumentNullException.ThrowIfNull(Sampling, nameof(Sampling));
        Sampling.Validate();
        if (Stop == null || Stop.Any(s => s is null))
            throw new ArgumentException("Stop must be a list of strings.", nameof(Stop));
    }
}
