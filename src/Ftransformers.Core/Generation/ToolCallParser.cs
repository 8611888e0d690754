using System.Security.Cryptography;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation;

/// <summary>
/// Splits streamed output into text and tool calls. Calls are read in DeepSeek-V3's format
/// (<c>&lt;｜tool▁call▁begin｜&gt;function&lt;｜tool▁sep｜&gt;NAME\n```json\nARGS\n```&lt;｜tool▁call▁end｜&gt;</c>) and in
/// the V3.1 format (<c>&lt;｜tool▁call▁begin｜&gt;NAME&lt;｜tool▁sep｜&gt;ARGS&lt;｜tool▁call▁end｜&gt;</c>). Each call comes
/// out twice: as <see cref="ToolCallDelta"/> pieces while it is generated (its id and name as soon as the name is
/// complete, then its arguments as they arrive), and whole with its id once it ends. Markers split across chunks are
/// recognised. One parser per request.
/// </summary>
public sealed class ToolCallParser
{
    private const string V3Type = "function", JsonFence = "```json", Fence = "```";

    private string _pending = "";
    private bool _inCalls;
    private int _callsInBlock;
    // The call being generated, once its name is known: its id, and the arguments that went out as pieces.
    private (string Id, string Name, string Arguments)? _current;

    /// <summary>Calls parsed so far.</summary>
    public int CallCount { get; private set; }

    /// <summary>Takes the next piece of output; returns the text now known not to be a call, and the calls completed.</summary>
    public (string Text, IReadOnlyList<GeneratedToolCall> Calls) Append(string text)
    {
        (string output, IReadOnlyList<GeneratedToolCall> calls, _) = AppendWithDeltas(text);
        return (output, calls);
    }

    /// <summary>As <see cref="Append"/>, with the pieces of calls generated so far.</summary>
    public (string Text, IReadOnlyList<GeneratedToolCall> Calls, IReadOnlyList<ToolCallDelta> Deltas) AppendWithDeltas(string text)
    {
        _pending += text;
        var output = new System.Text.StringBuilder();
        List<GeneratedToolCall>? calls = null;
        var deltas = new List<ToolCallDelta>();
        while (true)
        {
            if (!_inCalls)
            {
                int begin = _pending.IndexOf(DeepSeekChatTemplate.ToolCallsBegin, StringComparison.Ordinal);
                if (begin < 0)
                {
                    // Keep back a tail that may be the start of the marker.
                    int keep = PartialMarker(_pending, DeepSeekChatTemplate.ToolCallsBegin);
                    output.Append(_pending, 0, _pending.Length - keep);
                    _pending = _pending[^keep..];
                    break;
                }
                output.Append(_pending, 0, begin);
                _pending = _pending[(begin + DeepSeekChatTemplate.ToolCallsBegin.Length)..];
                _inCalls = true;
                _callsInBlock = 0;
                continue;
            }
            int end = _pending.IndexOf(DeepSeekChatTemplate.ToolCallEnd, StringComparison.Ordinal);
            int callsEnd = _pending.IndexOf(DeepSeekChatTemplate.ToolCallsEnd, StringComparison.Ordinal);
            if (callsEnd >= 0 && (end < 0 || callsEnd < end))
            {
                _pending = _pending[(callsEnd + DeepSeekChatTemplate.ToolCallsEnd.Length)..];
                _inCalls = false;
                _current = null;
                continue;
            }
            if (end < 0)
            {
                Progress(deltas);
                break;
            }
            string body = _pending[..end];
            _pending = _pending[(end + DeepSeekChatTemplate.ToolCallEnd.Length)..];
            if (Parse(body) is { } parsed)
            {
                (string id, _, string emitted) = _current ?? Start(parsed.Name, deltas);
                // What went out as pieces is a prefix of the arguments; the rest goes out now.
                string rest = parsed.Arguments.Length > emitted.Length ? parsed.Arguments[emitted.Length..] : "";
                if (rest.Length > 0)
                    deltas.Add(new ToolCallDelta(CallCount, null, null, rest));
                (calls ??= []).Add(new GeneratedToolCall(id, parsed.Name, parsed.Arguments));
                CallCount++;
                _callsInBlock++;
            }
            _current = null;
        }
        return (output.ToString(), calls ?? (IReadOnlyList<GeneratedToolCall>)[], deltas);
    }

    // A call not yet ended: once its name is known, its id and name go out, then whatever of its arguments cannot
    // still turn out to be the closing fence, marker or trailing whitespace.
    private void Progress(List<ToolCallDelta> deltas)
    {
        int begin = _pending.IndexOf(DeepSeekChatTemplate.ToolCallBegin, StringComparison.Ordinal);
        if (begin < 0)
            return;
        string call = _pending[(begin + DeepSeekChatTemplate.ToolCallBegin.Length)..];
        int sep = call.IndexOf(DeepSeekChatTemplate.ToolSep, StringComparison.Ordinal);
        if (sep < 0)
            return;
        string head = call[..sep].Trim(), rest = call[(sep + DeepSeekChatTemplate.ToolSep.Length)..];
        string name, arguments, closer;
        if (head == V3Type)
        {
            int fence = rest.IndexOf(JsonFence, StringComparison.Ordinal);
            if (fence < 0)
                return;
            (name, arguments, closer) = (rest[..fence].Trim(), rest[(fence + JsonFence.Length)..].TrimStart(), "\n" + Fence);
        }
        else
        {
            (name, arguments, closer) = (head, rest.TrimStart(), DeepSeekChatTemplate.ToolCallEnd);
        }
        int safe = arguments.IndexOf(closer, StringComparison.Ordinal);
        if (safe < 0)
            safe = arguments.Length - PartialMarker(arguments, closer);
        safe = arguments.AsSpan(0, safe).TrimEnd().Length;

        (string id, _, string emitted) = _current ?? Start(name, deltas);
        if (safe > emitted.Length)
        {
            deltas.Add(new ToolCallDelta(CallCount, null, null, arguments[emitted.Length..safe]));
            _current = (id, name, arguments[..safe]);
        }
    }

    private (string Id, string Name, string Arguments) Start(string name, List<ToolCallDelta> deltas)
    {
        string id = NewId();
        deltas.Add(new ToolCallDelta(CallCount, id, name, ""));
        _current = (id, name, "");
        return _current.Value;
    }

    /// <summary>
    /// Ends the stream (the output was cut, or ended). A call whose name had come out ends with the arguments it has,
    /// as OpenAI ends a call cut by max_tokens; markup after complete calls is dropped; other text held back comes out
    /// as text.
    /// </summary>
    public (string Text, IReadOnlyList<GeneratedToolCall> Calls) Flush()
    {
        // Markup left after calls that did come out (a cut between calls) is not text; a block with no call is.
        string text = !_inCalls ? _pending : _callsInBlock > 0 ? "" : DeepSeekChatTemplate.ToolCallsBegin + _pending;
        IReadOnlyList<GeneratedToolCall> calls = [];
        if (_current is (string id, string name, string arguments))
        {
            calls = [new GeneratedToolCall(id, name, arguments)];
            CallCount++;
            text = "";
        }
        _pending = "";
        _inCalls = false;
        _current = null;
        return (text, calls);
    }

    private (string Name, string Arguments)? Parse(string body)
    {
        int begin = body.IndexOf(DeepSeekChatTemplate.ToolCallBegin, StringComparison.Ordinal);
        if (begin < 0)
            return null;
        body = body[(begin + DeepSeekChatTemplate.ToolCallBegin.Length)..];
        int sep = body.IndexOf(DeepSeekChatTemplate.ToolSep, StringComparison.Ordinal);
        if (sep < 0)
            return null;
        string head = body[..sep].Trim(), rest = body[(sep + DeepSeekChatTemplate.ToolSep.Length)..];
        int fence = head == V3Type ? rest.IndexOf(JsonFence, StringComparison.Ordinal) : -1;
        if (fence < 0)
            return (head, rest.Trim());
        // V3: the type, then the name and the arguments in a json fence.
        string arguments = rest[(fence + JsonFence.Length)..];
        int close = arguments.LastIndexOf(Fence, StringComparison.Ordinal);
        return (rest[..fence].Trim(), (close >= 0 ? arguments[..close] : arguments).Trim());
    }

    private static string NewId() => "call_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    private static int PartialMarker(string text, string marker)
    {
        for (int keep = Math.Min(marker.Length - 1, text.Length); keep > 0; keep--)
            if (marker.AsSpan(0, keep).SequenceEqual(text.AsSpan(text.Length - keep)))
                return keep;
        return 0;
    }
}
