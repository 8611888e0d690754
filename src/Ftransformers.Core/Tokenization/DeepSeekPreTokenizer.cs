using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Ftransformers.Tokenization;

/// <summary>
/// DeepSeek-V3's pre-tokenizer, as declared in its <c>tokenizer.json</c>: added tokens are cut out
/// first, then the rest goes through a sequence of three isolating splits (runs of up to three
/// digits, runs of CJK ideographs and kana, then the GPT-4-like word regex). Each split works inside
/// the pieces of the one before, so no match crosses an earlier boundary. The byte-level step is
/// done by <see cref="BpeTokenizer"/> itself (<see cref="BpeOptions.ByteLevel"/>). The stages are one
/// class rather than a <see cref="CompositePreTokenizer"/>, whose offsets go wrong when text remains
/// after the last match.
/// </summary>
/// <remarks>
/// .NET regular expressions see UTF-16 code units, so a code point above U+FFFF would look like two
/// surrogates (category Cs) and miss <c>\p{L}</c>, <c>\p{S}</c> and the like. Such text is matched on
/// a stand-in string with one character per code point, each replaced by a BMP character of the same
/// general category, and the offsets are mapped back.
/// </remarks>
internal sealed partial class DeepSeekPreTokenizer : PreTokenizer
{
    private readonly AddedTokenMatcher _addedTokens;

    public DeepSeekPreTokenizer(AddedTokenMatcher addedTokens) => _addedTokens = addedTokens;

    /// <summary>Runs of up to three digits.</summary>
    internal const string DigitsPattern = @"\p{N}{1,3}";

    /// <summary>Runs of CJK ideographs (BMP block) and kana.</summary>
    internal const string CjkAndKanaPattern = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+";

    /// <summary>Words with their leading character, punctuation runs, line breaks and other whitespace.
    /// The CR and LF in it are the characters themselves, as in <c>tokenizer.json</c> once JSON-decoded.</summary>
    internal const string WordsPattern =
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

    [GeneratedRegex(DigitsPattern)]
    private static partial Regex Digits();

    [GeneratedRegex(CjkAndKanaPattern)]
    private static partial Regex CjkAndKana();

    [GeneratedRegex(WordsPattern)]
    private static partial Regex Words();

    /// <inheritdoc/>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());

    /// <inheritdoc/>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    /// <summary>Splits <paramref name="text"/> into added tokens and pre-tokens, in order, as (offset, length) pairs.</summary>
    public List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        // BpeTokenizer turns a piece equal to one of its SpecialTokens into that id, so an added
        // token only has to be a piece of its own.
        var pieces = new List<(int, int)>();
        int position = 0;
        while (position < text.Length)
        {
            int added = _addedTokens.FindNext(text, position, out int addedLength);
            int segmentEnd = added < 0 ? text.Length : added;
            if (segmentEnd > position)
                SplitSegment(text[position..segmentEnd], position, pieces);
            if (added < 0)
                break;
            pieces.Add((added, addedLength));
            position = added + addedLength;
        }
        return pieces;
    }

    private static void SplitSegment(ReadOnlySpan<char> segment, int offset, List<(int, int)> pieces)
    {
        if (segment.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            SplitWithRegexes(segment, offset, pieces);
            return;
        }

        (string proxy, int[] toOriginal) = BuildCodePointProxy(segment);
        int first = pieces.Count;
        SplitWithRegexes(proxy, 0, pieces);
        for (int i = first; i < pieces.Count; i++)
        {
            (int start, int length) = pieces[i];
            int originalStart = toOriginal[start];
            pieces[i] = (offset + originalStart, toOriginal[start + length] - originalStart);
        }
    }

    private static void SplitWithRegexes(ReadOnlySpan<char> text, int offset, List<(int, int)> output)
    {
        var digitPieces = new List<(int, int)>();
        Isolate(Digits(), text, 0, digitPieces);
        var cjkPieces = new List<(int, int)>();
        foreach ((int start, int length) in digitPieces)
            Isolate(CjkAndKana(), text.Slice(start, length), start, cjkPieces);
        foreach ((int start, int length) in cjkPieces)
            Isolate(Words(), text.Slice(start, length), offset + start, output);
    }

    // Hugging Face's Split with behavior "Isolated": every match is a piece, and so is every gap between matches.
    private static void Isolate(Regex regex, ReadOnlySpan<char> text, int offset, List<(int, int)> output)
    {
        int position = 0;
        foreach (ValueMatch match in regex.EnumerateMatches(text))
        {
            if (match.Index > position)
                output.Add((offset + position, match.Index - position));
            output.Add((offset + match.Index, match.Length));
            position = match.Index + match.Length;
        }
        if (position < text.Length)
            output.Add((offset + position, text.Length - position));
    }

    // One character per code point; toOriginal[i] is where stand-in character i starts in the
    // original text, with one extra entry for the end.
    private static (string Proxy, int[] ToOriginal) BuildCodePointProxy(ReadOnlySpan<char> text)
    {
        var proxy = new StringBuilder(text.Length);
        var toOriginal = new List<int>(text.Length + 1);
        int i = 0;
        while (i < text.Length)
        {
            toOriginal.Add(i);
            if (Rune.DecodeFromUtf16(text[i..], out Rune rune, out int consumed) == System.Buffers.OperationStatus.Done && rune.Value > 0xFFFF)
                proxy.Append(StandIn(Rune.GetUnicodeCategory(rune)));
            else
                proxy.Append(text[i]); // BMP character, or a lone surrogate kept as it is
            i += Math.Max(consumed, 1);
        }
        toOriginal.Add(text.Length);
        return (proxy.ToString(), toOriginal.ToArray());
    }

    // A BMP character with the same answers to every class the regexes ask about (\p{L}, \p{M},
    // \p{N}, \p{P}, \p{S}, \s); none of them is in the CJK ranges or ASCII.
    private static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => '\u00AA',        // ª (Lo)
        UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark
            or UnicodeCategory.EnclosingMark => '\u0300',                                         // combining grave (Mn)
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber
            or UnicodeCategory.OtherNumber => '\u00B2',                                           // ² (No)
        UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation or UnicodeCategory.OpenPunctuation
            or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation => '\u00A1', // ¡ (Po)
        UnicodeCategory.MathSymbol or UnicodeCategory.CurrencySymbol or UnicodeCategory.ModifierSymbol
            or UnicodeCategory.OtherSymbol => '\u00A6',                                           // ¦ (So)
        _ => '\uE000',                                                                            // private use (Co): none of the above
    };
}
