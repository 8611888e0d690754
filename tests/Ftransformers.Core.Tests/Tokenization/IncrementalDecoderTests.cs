using System.Text;
using Ftransformers.Tokenization;
using NUnit.Framework;

namespace Ftransformers.Tests.Tokenization;

[TestFixture]
public class IncrementalDecoderTests
{
    private static DeepSeekTokenizer Tokenizer => SharedTokenizer.Instance;

    private static (List<string> Pieces, string Flushed) Stream(IEnumerable<int> ids)
    {
        IncrementalDecoder decoder = Tokenizer.CreateIncrementalDecoder();
        var pieces = ids.Select(decoder.Append).ToList();
        return (pieces, decoder.Flush());
    }

    private static bool IsWholeUtf16(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                i++;
            else if (char.IsSurrogate(text[i]))
                return false;
        }
        return true;
    }

    [TestCase("Emoji test: 😀🚀👍🏽 and symbols ∑∫√ ≤ ≥ → ©®")]
    [TestCase("你好，世界。今天天气很好，我们去公园散步吧！")]
    [TestCase("日本語のテキストとカタカナ、ひらがなを含む文。")]
    [TestCase("I ❤️ 🦀 and 👨‍👩‍👧! 𠀀𠀁 𝐀𝐁𝐂")]
    public void PiecesAreWholeCharactersAndConcatenateToDecode(string text)
    {
        IReadOnlyList<int> ids = Tokenizer.Encode(text);

        (List<string> pieces, string flushed) = Stream(ids);

        Assert.That(pieces, Has.All.Matches<string>(p => !p.Contains('\uFFFD') && IsWholeUtf16(p)));
        Assert.That(string.Concat(pieces) + flushed, Is.EqualTo(Tokenizer.Decode(ids)));
        Assert.That(string.Concat(pieces) + flushed, Is.EqualTo(text));
        Assert.That(flushed, Is.Empty);
    }

    [Test]
    public void HoldsTheFirstHalfOfAnEmojiUntilTheSecondTokenArrives()
    {
        int[] ids = Tokenizer.Encode("😀").ToArray(); // F0 9F 98 | 80
        Assert.That(ids, Has.Length.EqualTo(2));
        IncrementalDecoder decoder = Tokenizer.CreateIncrementalDecoder();

        Assert.That(decoder.Append(ids[0]), Is.Empty);
        Assert.That(decoder.Append(ids[1]), Is.EqualTo("😀"));
        Assert.That(decoder.Flush(), Is.Empty);
    }

    [Test]
    public void FlushTurnsAnUnfinishedCharacterIntoReplacementCharacterAndResets()
    {
        int[] ids = Tokenizer.Encode("😀").ToArray();
        IncrementalDecoder decoder = Tokenizer.CreateIncrementalDecoder();

        decoder.Append(ids[0]);

        Assert.That(decoder.Flush(), Is.EqualTo("\uFFFD"));
        Assert.That(decoder.Append(19923), Is.EqualTo("Hello"));
    }

    [Test]
    public void ASpecialTokenAfterAnUnfinishedCharacterDecodesLikeDecode()
    {
        int[] emoji = Tokenizer.Encode("😀").ToArray();
        int[] ids = [emoji[0], Tokenizer.EosTokenId];

        (List<string> pieces, string flushed) = Stream(ids);

        Assert.That(string.Concat(pieces) + flushed, Is.EqualTo("\uFFFD<｜end▁of▁sentence｜>"));
        Assert.That(string.Concat(pieces) + flushed, Is.EqualTo(Tokenizer.Decode(ids)));
    }

    // Random ids (fixed seed) make arbitrary byte streams, invalid UTF-8 included: the stream
    // must still agree with a one-shot decode and never split a surrogate pair.
    [Test]
    public void RandomIdStreamsAgreeWithDecode()
    {
        var random = new Random(42);
        for (int n = 0; n < 500; n++)
        {
            int[] ids = Enumerable.Range(0, random.Next(1, 30)).Select(_ => random.Next(Tokenizer.VocabSize)).ToArray();

            (List<string> pieces, string flushed) = Stream(ids);

            Assert.That(string.Concat(pieces) + flushed, Is.EqualTo(Tokenizer.Decode(ids)), $"ids {string.Join(',', ids)}");
            Assert.That(pieces, Has.All.Matches<string>(IsWholeUtf16));
        }
    }

    // Feeding one byte per token cuts every multi-byte character at every byte boundary.
    [Test]
    public void CharactersFedOneByteAtATimeAppearWhenTheirLastByteArrives()
    {
        var byteToken = new Dictionary<byte, int>();
        for (int id = 0; id < Tokenizer.VocabSize; id++)
        {
            ReadOnlySpan<byte> bytes = Tokenizer.TokenBytes(id);
            if (bytes.Length == 1)
                byteToken.TryAdd(bytes[0], id);
        }
        Assert.That(byteToken, Has.Count.EqualTo(256));
        const string text = "aé你😀𠀀!";
        IncrementalDecoder decoder = Tokenizer.CreateIncrementalDecoder();

        var pieces = new List<string>();
        foreach (Rune rune in text.EnumerateRunes())
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(rune.ToString());
            for (int i = 0; i < utf8.Length; i++)
            {
                string piece = decoder.Append(byteToken[utf8[i]]);
                Assert.That(piece, Is.EqualTo(i == utf8.Length - 1 ? rune.ToString() : ""), $"byte {i} of U+{rune.Value:X4}");
                pieces.Add(piece);
            }
        }

        Assert.That(string.Concat(pieces), Is.EqualTo(text));
        Assert.That(decoder.Flush(), Is.Empty);
    }
}
