using System.Text;

namespace Ftransformers.Tokenization;

/// <summary>
/// Turns generated ids into text as they arrive. A character whose UTF-8 bytes are spread over
/// several tokens (common for CJK and emoji) is returned only once all its bytes have arrived, so
/// streamed text never shows half a character. The concatenation of every <see cref="Append"/>
/// result and <see cref="Flush"/> equals <see cref="DeepSeekTokenizer.Decode"/> of all the ids.
/// Not thread-safe: use one per stream.
/// </summary>
public sealed class IncrementalDecoder
{
    private readonly ITextTokenizer _tokenizer;
    // A stateful UTF-8 decoder holds the bytes of an unfinished character between calls and replaces
    // invalid bytes exactly as a one-shot decode of the whole stream would.
    private readonly Decoder _utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();

    internal IncrementalDecoder(ITextTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>Adds one token and returns the text it completes (possibly empty).</summary>
    public string Append(int tokenId) => Convert(_tokenizer.TokenBytes(tokenId), flush: false);

    /// <summary>
    /// Ends the stream: returns the text still held back (the bytes of an unfinished character
    /// become U+FFFD) and makes the decoder ready for a new stream.
    /// </summary>
    public string Flush() => Convert(ReadOnlySpan<byte>.Empty, flush: true);

    private string Convert(ReadOnlySpan<byte> bytes, bool flush)
    {
        // GetCharCount leaves the decoder's state alone; GetChars advances it (and a flush clears it).
        int count = _utf8.GetCharCount(bytes, flush);
        Span<char> chars = count <= 256 ? stackalloc char[count] : new char[count];
        int written = _utf8.GetChars(bytes, chars, flush);
        return written == 0 ? string.Empty : new string(chars[..written]);
    }
}
