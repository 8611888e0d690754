namespace Ftransformers.Generation;

/// <summary>
/// Finds stop strings in streamed text. Text that could still be the start of a stop string is held back, so the
/// caller never emits part of a stop string that later completes.
/// </summary>
public sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private string _pending = "";

    /// <summary>Creates a matcher for the request's stop strings (empty strings are ignored).</summary>
    public StopSequenceMatcher(IEnumerable<string>? stops) => _stops = stops?.Where(s => s.Length > 0).ToArray() ?? [];

    /// <summary>Adds newly decoded text; returns what is safe to emit and whether a stop string was reached (the text before it is returned, the stop string and anything after are dropped).</summary>
    public (string Emit, bool Stopped) Append(string text)
    {
        if (_stops.Length == 0)
            return (text, false);
        _pending += text;
        int first = -1;
        foreach (string stop in _stops)
        {
            int at = _pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        if (first >= 0)
        {
            string before = _pending[..first];
            _pending = "";
            return (before, true);
        }
        int hold = 0;
        foreach (string stop in _stops)
            for (int len = Math.Min(stop.Length - 1, _pending.Length); len > hold; len--)
                if (_pending.AsSpan(_pending.Length - len).SequenceEqual(stop.AsSpan(0, len)))
                {
                    hold = len;
                    break;
                }
        string emit = _pending[..^hold];
        _pending = _pending[^hold..];
        return (emit, false);
    }

    /// <summary>Returns the held-back text at the end of generation.</summary>
    public string Flush()
    {
        string rest = _pending;
        _pending = "";
        return rest;
    }
}
