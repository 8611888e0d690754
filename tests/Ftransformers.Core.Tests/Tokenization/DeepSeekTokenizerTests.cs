using System.Text;
using Ftransformers.Tokenization;
using NUnit.Framework;

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

    // Ids from the same independent implementation as the golden file (@lenml/tokenizers 3.7.2).
    // Code points above U+FFFF check the pre-tokenizer's code point mapping: .NET regexes alone
    // would see surrogates and split these texts differently.
    [TestCase("𝐀𝐁𝐂 bold", new[] { 10018, 225, 10018, 226, 10018, 227, 21089 }, TestName = "Supplementary letters join a following word like letters")]
    [TestCase("x𠀀𠀁y", new[] { 90, 175, 257, 225, 225, 175, 257, 225, 226, 91 }, TestName = "CJK extension B ideographs are letters, not CJK-range characters")]
    [TestCase("\U0001D165a", new[] { 3128, 230, 101, 67 }, TestName = "A supplementary combining mark is a mark")]
    [TestCase("𝟏𝟐𝟑𝟒", new[] { 70958, 240, 70958, 241, 70958, 242, 70958, 243 }, TestName = "Supplementary digits group by three code points")]
    [TestCase("你好😀世界", new[] { 30594, 28927, 225, 3427 }, TestName = "An emoji between CJK runs")]
    [TestCase("I ❤️ 🦀 and 👨‍👩‍👧!", new[] { 43, 53341, 100, 10759, 7351, 102, 225, 305, 52780, 104, 46088, 25730, 105, 46088, 25730, 103, 3 }, TestName = "Emoji with variation selector and ZWJ sequence")]
    [TestCase("ab\u0001", new[] { 425, 192 }, TestName = "Text after the last regex match is kept")]
    [TestCase("a<｜User｜>b<｜Assistant", new[] { 67, 128803, 68, 30, 28217, 88031 }, TestName = "An added token in text is one id, a truncated one is not")]
    [TestCase("call<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜>",
        new[] { 26606, 128806, 128808, 8701, 128814, 72, 201, 9854, 14479, 201, 76188, 9854, 128809 }, TestName = "Adjacent tool-call markers are single ids")]
    public void EncodeMatchesTheReferenceImplementation(string text, int[] expectedIds)
    {
        Assert.That(Tokenizer.Encode(text), Is.EqualTo(expectedIds));
        Assert.That(Tokenizer.Decode(expectedIds), Is.EqualTo(text));
    }

    [Test]
    public void ExposesDeepSeekV3BosEosAndVocabularySize()
    {
        Assert.That(Tokenizer.BosToken, Is.EqualTo("<｜begin▁of▁sentence｜>"));
        Assert.That(Tokenizer.EosToken, Is.EqualTo("<｜end▁of▁sentence｜>"));
        Assert.That(Tokenizer.BosTokenId, Is.EqualTo(0));
        Assert.That(Tokenizer.EosTokenId, Is.EqualTo(1));
        Assert.That(Tokenizer.VocabSize, Is.EqualTo(128815));
    }

    [Test]
    public void IsSpecialFollowsTheSpecialFlagOfAddedTokens()
    {
        Assert.That(Tokenizer.IsSpecial(0), Is.True);       // <｜begin▁of▁sentence｜>
        Assert.That(Tokenizer.IsSpecial(128799), Is.True);  // <｜place▁holder▁no▁799｜>
        Assert.That(Tokenizer.IsSpecial(128803), Is.False); // <｜User｜>, an added token not flagged special
        Assert.That(Tokenizer.IsSpecial(19923), Is.False);  // "Hello"
        Assert.That(Tokenizer.IsSpecial(-1), Is.False);
        Assert.That(Tokenizer.IsSpecial(Tokenizer.VocabSize), Is.False);
    }

    [Test]
    public void EncodeDoesNotAddBosOrEos()
    {
        Assert.That(Tokenizer.Encode("Hello world!"), Is.EqualTo(new[] { 19923, 2058, 3 }));
        Assert.That(Tokenizer.Encode(""), Is.Empty);
    }

    [Test]
    public void DecodeWritesSpecialTokensAsTextAndSkipsIdsWithoutAToken()
    {
        // 129279 is a valid model output (the embedding table has 129280 rows) with no token.
        string text = Tokenizer.Decode([0, 19923, 129279, 1]);

        Assert.That(text, Is.EqualTo("<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>"));
    }

    [Test]
    public void DecodeReplacesAnUnfinishedCharacterWithReplacementCharacter()
    {
        int[] ids = Tokenizer.Encode("😀").ToArray(); // four UTF-8 bytes over two tokens

        Assert.That(ids, Has.Length.EqualTo(2));
        Assert.That(Tokenizer.Decode(ids[..1]), Is.EqualTo("\uFFFD"));
    }

    [Test]
    public void LongMixedText_EncodesToThousandsOfTokens_ThatDecodeBackToIt()
    {
        // Its speed is measured by TokenizerBenchmark.
        string text = string.Concat(Enumerable.Repeat("DeepSeek-V3 在 2024 年发布。The quick brown fox 🦊 jumps over 13 lazy dogs!\n", 150));
        IReadOnlyList<int> ids = Tokenizer.Encode(text);

        Assert.That(ids.Count, Is.GreaterThan(4000));
        Assert.That(Tokenizer.Encode(text), Is.EqualTo(ids), "a warm BPE cache gives the same ids");
        Assert.That(Tokenizer.Decode(ids), Is.EqualTo(text));
    }

    [Test]
    public void EncodeThenDecodeRoundTripsRandomMultilingualText()
    {
        var random = new Random(1234);
        string[] pieces = ["a", "Z", "7", " ", "\n", "\t", "!", "é", "ß", "你", "の", "カ", "한", "م", "न्", "😀", "👍🏽", "𝐀", "𠀀", "<｜User｜>", "<｜", "▁", "\u00A0", "\u3000"];
        for (int n = 0; n < 300; n++)
        {
            var text = new StringBuilder();
            int length = random.Next(1, 40);
            for (int i = 0; i < length; i++)
                text.Append(pieces[random.Next(pieces.Length)]);

            Assert.That(Tokenizer.Decode(Tokenizer.Encode(text.ToString())), Is.EqualTo(text.ToString()));
        }
    }

    [Test]
    public void ConcurrentEncodesGiveTheSameIdsAsSequentialOnes()
    {
        string[] texts = Enumerable.Range(0, 64).Select(i => $"request {i}: 你好 {i * 7919} world🌍 {new string('x', i % 17)}").ToArray();
        IReadOnlyList<int>[] sequential = texts.Select(Tokenizer.Encode).ToArray();

        var concurrent = new IReadOnlyList<int>[texts.Length];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => concurrent[i] = Tokenizer.Encode(texts[i]));

        Assert.That(concurrent, Is.EqualTo(sequential));
    }
}
