using System.Text.RegularExpressions;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation;

/// <summary>
/// One generation: the input (exactly one of <see cref="Prompt"/>, <see cref="Messages"/> or
/// <see cref="PromptTokens"/>), how to sample, and when to stop.
/// </summary>
public sealed partial record GenerationRequest
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

    /// <summary>The shape the output must have; JSON formats are enforced while decoding.</summary>
    public ResponseFormat ResponseFormat { get; init; } = ResponseFormat.Text;

    /// <summary>Functions the model may call (needs <see cref="Messages"/>); they are described in the prompt.</summary>
    public IReadOnlyList<ToolDefinition>? Tools { get; init; }

    /// <summary>Whether and which tools must be called; null is <see cref="ToolChoice.Auto"/>.</summary>
    public ToolChoice? ToolChoice { get; init; }

    /// <summary>Whether a forced tool call may be followed by more calls in the same turn.</summary>
    public bool ParallelToolCalls { get; init; } = true;

    /// <summary>Whether each generated token comes with its log-probability.</summary>
    public bool Logprobs { get; init; }

    /// <summary>How many most likely alternatives come with each token's log-probability (0 to 20; needs <see cref="Logprobs"/>).</summary>
    public int TopLogprobs { get; init; }

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
        ArgumentNullException.ThrowIfNull(ResponseFormat, nameof(ResponseFormat));
        if (ResponseFormat.Kind != ResponseFormatKind.Text && IgnoreEos)
            throw new ArgumentException("IgnoreEos cannot be combined with a JSON response format: nothing may follow the JSON.", nameof(IgnoreEos));
        if (TopLogprobs is < 0 or > 20)
            throw new ArgumentOutOfRangeException(nameof(TopLogprobs), TopLogprobs, "top_logprobs must be in [0, 20].");
        if (TopLogprobs > 0 && !Logprobs)
            throw new ArgumentException("top_logprobs needs logprobs to be true.", nameof(TopLogprobs));
        ValidateTools();
    }

    private void ValidateTools()
    {
        if (Tools is { Count: > 0 })
        {
            if (Messages == null)
                throw new ArgumentException("Tools need a conversation (Messages): the chat format is where tools are described and called.", nameof(Tools));
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (ToolDefinition tool in Tools)
            {
                if (tool is null || !ToolName().IsMatch(tool.Name ?? ""))
                    throw new ArgumentException($"Tool name '{tool?.Name}' must be 1 to 64 letters, digits, '_' or '-'.", nameof(Tools));
                if (!names.Add(tool.Name!))
                    throw new ArgumentException($"Tool '{tool.Name}' is defined twice.", nameof(Tools));
            }
        }
        switch (ToolChoice?.Mode)
        {
            case ToolChoiceMode.Required or ToolChoiceMode.Function when Tools is not { Count: > 0 }:
                throw new ArgumentException($"tool_choice '{ToolChoice.Mode}' needs tools.", nameof(ToolChoice));
            case ToolChoiceMode.Function when !Tools!.Any(t => t.Name == ToolChoice.FunctionName):
                throw new ArgumentException($"tool_choice names function '{ToolChoice.FunctionName}', which is not among the tools.", nameof(ToolChoice));
            case ToolChoiceMode.Required or ToolChoiceMode.Function when IgnoreEos:
                throw new ArgumentException("IgnoreEos cannot be combined with a forced tool call: nothing may follow the calls.", nameof(IgnoreEos));
        }
    }

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex ToolName();
}
