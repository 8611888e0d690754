namespace Ftransformers.Generation;

/// <summary>How the next token is drawn from the logits.</summary>
public sealed record SamplingOptions
{
    /// <summary>Softmax temperature; 0 picks the most likely token (greedy decoding).</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Nucleus sampling: keep the most likely tokens whose probabilities sum to at least this (1 = off).</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Keep only the this-many most likely tokens (0 = off).</summary>
    public int TopK { get; init; }

    /// <summary>Drop tokens less likely than this fraction of the most likely one (0 = off).</summary>
    public float MinP { get; init; }

    /// <summary>Seed of the random draw; the same seed and request give the same output. Null draws a fresh seed.</summary>
    public int? Seed { get; init; }

    /// <summary>Subtracted from the logit of every token already generated (OpenAI's presence_penalty, -2 to 2).</summary>
    public float PresencePenalty { get; init; }

    /// <summary>Subtracted from a token's logit once per time it was generated (OpenAI's frequency_penalty, -2 to 2).</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>
    /// Divides the positive logits (multiplies the negative ones) of every token in the prompt or the output
    /// (the Hugging Face / vLLM repetition_penalty; 1 = off).
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Added to the logits of the given token ids (OpenAI's logit_bias, -100 to 100; -100 bans a token).</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>Whether any penalty or bias changes the logits.</summary>
    internal bool AdjustsLogits => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1 || LogitBias is { Count: > 0 };

    /// <summary>Greedy decoding.</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Throws when a value is out of range, naming the field.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be a finite number >= 0.");
        if (!(TopP > 0 && TopP <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top_p must be in (0, 1].");
        if (TopK < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top_k must be >= 0.");
        if (!(MinP >= 0 && MinP <= 1))
            throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "min_p must be in [0, 1].");
        if (!(PresencePenalty >= -2 && PresencePenalty <= 2))
            throw new ArgumentOutOfRangeException(nameof(PresencePenalty), PresencePenalty, "presence_penalty must be in [-2, 2].");
        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2))
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), FrequencyPenalty, "frequency_penalty must be in [-2, 2].");
        if (!(RepetitionPenalty > 0 && RepetitionPenalty <= 10))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "repetition_penalty must be in (0, 10].");
        foreach ((int token, float bias) in LogitBias ?? new Dictionary<int, float>())
            if (token < 0 || !(bias >= -100 && bias <= 100))
                throw new ArgumentOutOfRangeException(nameof(LogitBias), $"logit_bias maps token {token} to {bias}; ids must be >= 0 and biases in [-100, 100].");
    }
}
