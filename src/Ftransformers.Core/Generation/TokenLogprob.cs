namespace Ftransformers.Generation;

/// <summary>
/// A generated token's log-probability under the model (log-softmax of its logits, before temperature, penalties and
/// masks), with the most likely alternatives when asked for.
/// </summary>
/// <param name="TokenId">The token.</param>
/// <param name="Logprob">Its natural-log probability.</param>
/// <param name="Top">The most likely tokens at this step, most likely first (empty unless requested).</param>
public sealed record TokenLogprob(int TokenId, float Logprob, IReadOnlyList<TokenLogprob> Top);
