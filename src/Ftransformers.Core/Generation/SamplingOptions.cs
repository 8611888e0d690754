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
    }
}
