using System.Security.Cryptography;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation;

/// <summary>
/// Splits streamed output into text and tool calls. Calls are read in DeepSeek-V3's format
/// (<c>&lt;｜tool▁call▁begin｜&gt;function&lt;｜tool▁sep｜&gt;NAME\n```json\nARGS\n```&lt;｜tool▁call▁end｜&gt;</c>) and in
/// the V3.1 format (<c>&lt;｜tool▁call▁begin｜&gt;NAME&lt;｜tool▁sep｜&gt;ARGS&lt;｜tool▁call▁end｜&gt;</c>); each complete
/// call comes out with a fresh id. Markers split across chunks are recognised. One parser per request.
/// </summary>
public sealed class ToolCallParser
{
    private string _pending = "";
    private bool _inCalls;

    /// <summary>Calls parsed so far.</summary>
    public int CallCount { get; private set; }

    /// <summary>Takes the next piece of output; returns the text now known not to be a call, and the calls completed.</summary>
    public (string Text, IReadOnlyList<GeneratedToolCall> Calls) Append(string text)
    {
        _pending += text;
        var output = new System.Text.StringBuilder();
        List<GeneratedToolCall>? calls = null;
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
                continue;
            }
            int end = _pending.IndexOf(DeepSeekChatTemplate.ToolCallEnd, StringComparison.Ordinal);
            int callsEnd = _pending.IndexOf(DeepSeekChatTemplate.ToolCallsEnd, StringComparison.Ordinal);
            if (callsEnd >= 0 && (end < 0 || callsEnd < end))
            {
                _pending = _pending[(callsEnd + DeepSeekChatTemplate.ToolCallsEnd.Length)..];
                _inCalls = false;
                continue;
            }
            if (end < 0)
                break;
            string body = _pending[..end];
            _pending = _pending[(end + DeepSeekChatTemplate.ToolCallEnd.Length)..];
            if (Parse(body) is { } call)
                (calls ??= []).Add(call);
        }
        return (output.ToString(), calls ?? (IReadOnlyList<GeneratedToolCall>)[]);
    }

    /// <summary>Ends the stream: text held back comes out as text, and so does an unfinished call (the output was cut).</summary>
    public string Flush()
    {
        string rest = _inCalls ? DeepSeekChatTemplate.ToolCallsBegin + _pending : _pending;
        _pending = "";
        _inCalls = false;
        return rest;
    }

    private GeneratedToolCall? Parse(string body)
    {
        int begin = body.IndexOf(DeepSeekChatTemplate.ToolCallBegin, StringComparison.Ordinal);
        if (begin < 0)
            return null;
        body = body[(begin + DeepSeekChatTemplate.ToolCallBegin.Length)..];
        int sep = body.IndexOf(DeepSeekChatTemplate.ToolSep, StringComparison.Ordinal);
        if (sep < 0)
            return null;
        string head = body[..sep].Trim(), rest = body[(sep + DeepSeekChatTemplate.ToolSep.Length)..];
        string name, arguments;
        int fence = rest.IndexOf("```json", StringComparison.Ordinal);
        if (fence >= 0)
        {
            // V3: type, then the name and the arguments in a json fence.
            name = rest[..fence].Trim();
            arguments = rest[(fence + "```json".Length)..];
            int close = arguments.LastIndexOf("```", StringComparison.Ordinal);
            arguments = (close >= 0 ? arguments[..close] : arguments).Trim();
        }
        else
        {
            name = head;
            arguments = rest.Trim();
        }
        CallCount++;
        return new GeneratedToolCall(NewId(), name, arguments);
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
