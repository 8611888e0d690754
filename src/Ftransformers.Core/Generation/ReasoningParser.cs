namespace Ftransformers.Generation;

/// <summary>
/// Splits streamed output into reasoning and answer the way DeepSeek-R1 writes them: <c>&lt;think&gt;...&lt;/think&gt;</c>
/// at the start of the output is reasoning, the rest is the answer. Tags split across chunks are recognised; output
/// that does not open with <c>&lt;think&gt;</c> is all answer. Not thread-safe: one parser per request.
/// </summary>
public sealed class ReasoningParser
{
    /// <summary>The tag that opens reasoning.</summary>
    public const string OpenTag = "<think>";

    /// <summary>The tag that closes reasoning.</summary>
    public const string CloseTag = "</think>";

    private enum State { Start, Opening, Reasoning, AfterReasoning, Answer }

    private State _state;
    private string _pending = "";

    /// <summary>
    /// Creates a parser; <paramref name="startsInReasoning"/> is for chat formats whose generation prompt already opens
    /// the <c>&lt;think&gt;</c> block, so the output starts inside it.
    /// </summary>
    public ReasoningParser(bool startsInReasoning = false) => _state = startsInReasoning ? State.Opening : State.Start;

    /// <summary>Whether reasoning has been seen so far.</summary>
    public bool SawReasoning { get; private set; }

    /// <summary>Takes the next piece of output; returns what is now known to be reasoning and what is answer.</summary>
    public (string Reasoning, string Answer) Append(string text)
    {
        _pending += text;
        string reasoning = "", answer = "";
        while (true)
        {
            switch (_state)
            {
                case State.Start:
                {
                    string trimmed = _pending.TrimStart();
                    if (trimmed.StartsWith(OpenTag, StringComparison.Ordinal))
                    {
                        _pending = trimmed[OpenTag.Length..];
                        _state = State.Reasoning;
                        SawReasoning = true;
                        continue;
                    }
                    if (OpenTag.StartsWith(trimmed, StringComparison.Ordinal))
                        return (reasoning, answer); // empty or a partial opening tag: wait for more
                    _state = State.Answer;
                    continue;
                }
                case State.Opening:
                {
                    // Already inside reasoning; a model that opens <think> anyway gets its tag dropped.
                    string trimmed = _pending.TrimStart();
                    if (OpenTag.StartsWith(trimmed, StringComparison.Ordinal) && trimmed.Length < OpenTag.Length)
                        return (reasoning, answer); // empty or a partial opening tag: wait for more
                    if (trimmed.StartsWith(OpenTag, StringComparison.Ordinal))
                        _pending = trimmed[OpenTag.Length..];
                    _state = State.Reasoning;
                    continue;
                }
                case State.Reasoning:
                {
                    SawReasoning = true;
                    int close = _pending.IndexOf(CloseTag, StringComparison.Ordinal);
                    if (close >= 0)
                    {
                        reasoning += _pending[..close];
                        _pending = _pending[(close + CloseTag.Length)..];
                        _state = State.AfterReasoning;
                        continue;
                    }
                    int keep = PartialSuffix(_pending, CloseTag);
                    reasoning += _pending[..^keep];
                    _pending = _pending[^keep..];
                    return (reasoning, answer);
                }
                case State.AfterReasoning:
                    // R1 separates the answer from its reasoning with blank lines; they belong to neither.
                    _pending = _pending.TrimStart();
                    if (_pending.Length == 0)
                        return (reasoning, answer);
                    _state = State.Answer;
                    continue;
                default:
                    answer += _pending;
                    _pending = "";
                    return (reasoning, answer);
            }
        }
    }

    /// <summary>Ends the output: returns whatever was held back (a partial tag), as reasoning or answer by the state.</summary>
    public (string Reasoning, string Answer) Flush()
    {
        string rest = _pending;
        _pending = "";
        return _state switch
        {
            State.Reasoning or State.Opening => (rest, ""),
            State.AfterReasoning => ("", ""),
            _ => ("", rest),
        };
    }

    // Length of the longest suffix of text that is a proper prefix of tag.
    private static int PartialSuffix(string text, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, text.Length); n > 0; n--)
            if (text.AsSpan(text.Length - n).SequenceEqual(tag.AsSpan(0, n)))
                return n;
        return 0;
    }
}
