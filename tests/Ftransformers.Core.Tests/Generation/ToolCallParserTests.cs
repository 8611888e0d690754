using Ftransformers.Generation;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation;

[TestFixture]
public sealed class ToolCallParserTests
{
    private const string V3Calls =
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Paris\"}\n```<｜tool▁call▁end｜>\n" +
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"zone\":\"CET\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

    private const string V31Calls =
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Paris\"}<｜tool▁call▁end｜>" +
        "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"zone\":\"CET\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

    private static (string Text, List<GeneratedToolCall> Calls, List<ToolCallDelta> Deltas) Run(string output, int piece)
    {
        var parser = new ToolCallParser();
        string text = "";
        var calls = new List<GeneratedToolCall>();
        var deltas = new List<ToolCallDelta>();
        for (int i = 0; i < output.Length; i += piece)
        {
            (string t, IReadOnlyList<GeneratedToolCall> c, IReadOnlyList<ToolCallDelta> d) = parser.AppendWithDeltas(output.Substring(i, Math.Min(piece, output.Length - i)));
            text += t;
            calls.AddRange(c);
            deltas.AddRange(d);
        }
        (string rest, IReadOnlyList<GeneratedToolCall> cut) = parser.Flush();
        calls.AddRange(cut);
        Assert.That(parser.CallCount, Is.EqualTo(calls.Count));
        return (text + rest, calls, deltas);
    }

    [Test]
    public void TextBeforeTheCallsIsText_AndEachCallComesOutWholeAndInPieces([Values(V3Calls, V31Calls)] string format, [Values(1, 2, 3, 7, 1000)] int piece)
    {
        (string text, List<GeneratedToolCall> calls, List<ToolCallDelta> deltas) = Run("Let me check." + format, piece);
        Assert.That(text, Is.EqualTo("Let me check."));
        Assert.That(calls.Select(c => (c.Name, c.Arguments)), Is.EqualTo(new[] { ("get_weather", "{\"city\":\"Paris\"}"), ("get_time", "{\"zone\":\"CET\"}") }));
        Assert.That(calls.Select(c => c.Id), Is.All.Matches<string>(id => id.StartsWith("call_") && id.Length == 29));
        Assert.That(calls[0].Id, Is.Not.EqualTo(calls[1].Id));

        // The pieces: each call's first one carries its id and name; joined, they are its arguments.
        for (int i = 0; i < calls.Count; i++)
        {
            ToolCallDelta[] own = [.. deltas.Where(d => d.Index == i)];
            Assert.That((own[0].Id, own[0].Name), Is.EqualTo((calls[i].Id, calls[i].Name)));
            Assert.That(own.Skip(1).All(d => d.Id == null && d.Name == null), Is.True);
            Assert.That(string.Concat(own.Select(d => d.Arguments)), Is.EqualTo(calls[i].Arguments));
        }
        if (piece == 1)
            Assert.That(deltas.Count(d => d.Index == 0), Is.GreaterThan(2), "arguments stream as they arrive, not only at the end");
    }

    [Test]
    public void ACallCutAfterItsName_EndsWithTheArgumentsItHas()
    {
        (string text, List<GeneratedToolCall> calls, List<ToolCallDelta> deltas) =
            Run("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"ci", 1);
        Assert.That(text, Is.Empty);
        Assert.That((calls.Single().Name, calls.Single().Arguments), Is.EqualTo(("get_weather", "{\"ci")));
        Assert.That(string.Concat(deltas.Select(d => d.Arguments)), Is.EqualTo("{\"ci"));
    }

    [Test]
    public void ACallCutBeforeItsName_IsGivenBackAsText()
    {
        string partial = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_wea";
        (string text, List<GeneratedToolCall> calls, List<ToolCallDelta> deltas) = Run(partial, 5);
        Assert.That(text, Is.EqualTo(partial));
        Assert.That(calls, Is.Empty);
        Assert.That(deltas, Is.Empty);
    }

    [Test]
    public void MarkupAfterCompleteCalls_IsNotText()
    {
        (string text, List<GeneratedToolCall> calls, _) = Run(V3Calls[..(V3Calls.IndexOf("<｜tool▁call▁end｜>") + "<｜tool▁call▁end｜>".Length + 1)], 4);
        Assert.That(calls.Single().Name, Is.EqualTo("get_weather"));
        Assert.That(text, Is.Empty, "a cut between calls leaves no markup in the text");
    }

    [Test]
    public void TextThatOnlyLooksLikeTheStartOfAMarkerIsReleased()
    {
        var parser = new ToolCallParser();
        Assert.That(parser.Append("a <｜tool").Text, Is.EqualTo("a "));
        Assert.That(parser.Append(" b").Text, Is.EqualTo("<｜tool b"));
    }
}
