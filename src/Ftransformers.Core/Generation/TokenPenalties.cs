namespace Ftransformers.Generation;

/// <summary>
/// Adjusts a request's logits before sampling: presence and frequency penalties over the tokens generated so far,
/// the repetition penalty over the prompt and the output, and the logit bias. One per request.
/// </summary>
internal sealed class TokenPenalties
{
    private readonly SamplingOptions _options;
    private readonly Dictionary<int, int> _generated = [];
    private readonly HashSet<int> _seen;

    /// <summary>Starts with the prompt's tokens (seen by the repetition penalty only).</summary>
    public TokenPenalties(SamplingOptions options, IEnumerable<int> prompt)
    {
        _options = options;
        _seen = options.RepetitionPenalty != 1 ? [.. prompt] : [];
    }

    /// <summary>Counts a generated token.</summary>
    public void Add(int token)
    {
        _generated[token] = _generated.GetValueOrDefault(token) + 1;
        if (_options.RepetitionPenalty != 1)
            _seen.Add(token);
    }

    /// <summary>Applies the penalties and the bias to <paramref name="logits"/> in place.</summary>
    public void Apply(Span<float> logits)
    {
        float repetition = _options.RepetitionPenalty;
        foreach (int token in _seen)
            if ((uint)token < (uint)logits.Length)
                logits[token] = logits[token] > 0 ? logits[token] / repetition : logits[token] * repetition;
        foreach ((int token, int count) in _generated)
            if ((uint)token < (uint)logits.Length)
                logits[token] -= _options.PresencePenalty + _options.FrequencyPenalty * count;
        foreach ((int token, float bias) in _options.LogitBias ?? new Dictionary<int, float>())
            if ((uint)token < (uint)logits.Length)
                logits[token] += bias;
    }
}
