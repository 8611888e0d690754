using System.Diagnostics;
using NUnit.Framework;
using Ftransformers.Tokenization;

namespace Ftransformers.Tests.Tokenization;

[TestFixture]
public class DeepSeekTokenizerTests
{
    private static DeepSeekTokenizer Tokenizer => SharedTokenizer.Instance;

    private static IEnumerable<TestCaseData> GoldenCases() =>
        GoldenEncodings.Cases().Select((c, i) => new TestCaseData(c.Text, c.Ids, c.Decoded).SetName($"Golden case {i:00}: {Shorten(c.Text)}"));

    private static string Shorten(string text) => text.Length <= 30 ? text : text[..30] + "...";

    [TestCaseSource(nameof(GoldenCases))]
    public void EncodeProducesTheGoldenIds(string text, int[] expectedIds, string _)
    {
        Assert.That(Tokenizer.Encode(text), Is.EqualTo(expectedIds));
    }

    [TestCaseSource(nameof(GoldenCases))]
    public void DecodeOfTheGoldenIdsGivesTheGoldenText(string _, int[] ids, string expectedText)
    {
        Assert.That(Tokenizer.Decode(ids), Is.EqualTo(expectedText));
    }
}
