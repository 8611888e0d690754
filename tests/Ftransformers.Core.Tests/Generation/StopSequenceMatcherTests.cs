using Ftransformers.Generation;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation;

[TestFixture]
public class StopSequenceMatcherTests
{
    [Test]
    public void StopStringSplitAcrossPieces_IsCaught_AndNothingOfItIsEmitted()
    {
        var m = new StopSequenceMatcher(["</answer>"]);
        Assert.That(m.Append("42 </an"), Is.EqualTo(("42 ", false)));
        Assert.That(m.Append("swer> trailing"), Is.EqualTo(("", true)));
    }

    [Test]
    public void HeldBackPrefix_IsReleasedWhenItStopsMatching()
    {
        var m = new StopSequenceMatcher(["STOP"]);
        Assert.That(m.Append("ST"), Is.EqualTo(("", false)));
        Assert.That(m.Append("ART"), Is.EqualTo(("START", false)));
    }

    [Test]
    public void EarliestOfSeveralStops_Wins()
    {
        var m = new StopSequenceMatcher(["b", "xyz"]);
        Assert.That(m.Append("axyzb"), Is.EqualTo(("a", true)));
    }

    [Test]
    public void Flush_ReturnsHeldText()
    {
        var m = new StopSequenceMatcher(["end"]);
        m.Append("the en");
        Assert.That(m.Flush(), Is.EqualTo("en"));
    }

    [Test]
    public void NoStops_PassesTextThrough()
    {
        var m = new StopSequenceMatcher([]);
        Assert.That(m.Append("anything"), Is.EqualTo(("anything", false)));
    }
}
