using Ftransformers.Generation;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation;

[TestFixture]
public sealed class ToolCallParserTests
{
    private const string V3Calls =
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Paris\"}\n```<｜tool▁call▁end｜>\n" +
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{\"zone\":\"CET\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";

    [Test]
    public void TextBeforeTheCallsIsTextAndEachCallComesOutWhole([Values(1, 2, 3, 7, 1000)] int piece)
    {
        string output = "Let me check." + V3Calls;
        var parser = new ToolCallParser();
        string text = "";
        var calls = new List<GeneratedToolCall>();
        for (int i = 0; i < output.Length; i += piece)
        {
            (string t, IReadOnlyList<GeneratedToolCall> c) = parser.Append(output.Substring(i, Math.Min(piece, output.Length - i)));
            text += t;
            calls.AddRange(c);
        }
        text += parser.Flush();
        Assert.That(text, Is.EqualTo("Let me check."));
        Assert.That(calls.Select(c => (c.Name, c.Arguments)), Is.EqualTo(new[] { ("get_weather", "{\"city\":\"Paris\"}"), ("get_time", "{\"zone\":\"CET\"}") }));
        Assert.That(calls.Select(c => c.Id), Is.All.Matches<string>(id => id.StartsWith("call_") && id.Length == 29));
        Assert.That(calls[0].Id, Is.Not.EqualTo(calls[1].Id));
        Assert.That(parser.CallCount, Is.EqualTo(2));
    }

    [Test]
    public void TheV31FormatIsReadToo()
    {
        var parser = new ToolCallParser();
        (string text, IReadOnlyList<GeneratedToolCall> calls) = parser.Append(
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>search<｜tool▁sep｜>{\"q\":\"x\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
        Assert.That(text, Is.Empty);
        Assert.That(calls.Single().Name, Is.EqualTo("search"));
        Assert.That(calls.Single().Arguments, Is.EqualTo("{\"q\":\"x\"}"));
    }

    [Test]
    public void AnUnfinishedCallIsGivenBackAsText()
    {
        var parser = new ToolCallParser();
        string partial = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"ci";
        Assert.That(parser.Append(partial).Text, Is.Empty);
        Assert.That(parser.Flush(), Is.EqualTo(partial));
        Assert.That(parser.CallCount, Is.Zero);
    }

    [Test]
    public void TextThatOnlyLooksLikeTheStartOfAMarkerIsReleased()
    {
        var parser = new ToolCallParser();
        Assert.That(parser.Append("a <｜tool").Text, Is.EqualTo("a "));
        Assert.That(parser.Append(" b").Text, Is.EqualTo("<｜tool b"));
    }
}
