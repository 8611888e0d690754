using Ftransformers.Generation;
using NUnit.Framework;

namespace Ftransformers.Tests.Hosting;

[TestFixture]
public class ReasoningParserTests
{
    private static (string Reasoning, string Answer) Run(ReasoningParser parser, params string[] pieces)
    {
        string reasoning = "", answer = "";
        foreach (string piece in pieces)
        {
            (string r, string a) = parser.Append(piece);
            reasoning += r;
            answer += a;
        }
        (string fr, string fa) = parser.Flush();
        return (reasoning + fr, answer + fa);
    }

    [Test]
    public void ThinkBlock_IsReasoning_AndTheBlankLinesAfterItBelongToNeither()
    {
        Assert.That(Run(new ReasoningParser(), "<think>\nLet me see.\n</think>\n\nFour."), Is.EqualTo(("\nLet me see.\n", "Four.")));
    }

    [Test]
    public void EveryCharacterBoundary_GivesTheSameSplit()
    {
        const string text = "<think>a<b</think>c</think>";
        for (int i = 1; i < text.Length; i++)
            Assert.That(Run(new ReasoningParser(), text[..i], text[i..]), Is.EqualTo(("a<b", "c</think>")), $"split at {i}");
        Assert.That(Run(new ReasoningParser(), [.. text.Select(c => c.ToString())]), Is.EqualTo(("a<b", "c</think>")));
    }

    [Test]
    public void OutputWithoutAnOpeningTag_IsAllAnswer()
    {
        Assert.That(Run(new ReasoningParser(), "Hello <think>not reasoning</think>"), Is.EqualTo(("", "Hello <think>not reasoning</think>")));
        Assert.That(Run(new ReasoningParser(), "<thi", "s is text"), Is.EqualTo(("", "<this is text")));
    }

    [Test]
    public void PartialOpeningTag_IsHeldBack_UntilDecided()
    {
        var parser = new ReasoningParser();
        Assert.That(parser.Append("<thi"), Is.EqualTo(("", "")));
        Assert.That(parser.Append("nk>x"), Is.EqualTo(("x", "")));
        Assert.That(parser.SawReasoning, Is.True);
    }

    [Test]
    public void UnclosedReasoning_IsFlushedAsReasoning()
    {
        Assert.That(Run(new ReasoningParser(), "<think>still thinking</thi"), Is.EqualTo(("still thinking</thi", "")));
    }

    [Test]
    public void TemplateThatOpensTheBlock_StartsInReasoning()
    {
        Assert.That(Run(new ReasoningParser(startsInReasoning: true), "plan</think>done"), Is.EqualTo(("plan", "done")));
    }

    [Test]
    public void StartingInReasoning_DropsAThinkTagTheModelWritesAnyway([Values(1, 2, 5, 100)] int piece)
    {
        string output = "\n<think>plan</think>\n\ndone";
        string[] pieces = [.. Enumerable.Range(0, (output.Length + piece - 1) / piece).Select(i => output.Substring(i * piece, Math.Min(piece, output.Length - i * piece)))];
        Assert.That(Run(new ReasoningParser(startsInReasoning: true), pieces), Is.EqualTo(("plan", "done")));
        Assert.That(Run(new ReasoningParser(startsInReasoning: true), "<thi"), Is.EqualTo(("<thi", "")), "an output cut inside the tag is reasoning");
    }
}
