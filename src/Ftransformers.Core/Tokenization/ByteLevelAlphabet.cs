namespace Ftransformers.Tokenization;

/// <summary>
/// The GPT-2 byte-level alphabet: every byte is shown as one printable character so that BPE
/// vocabularies can be stored as text. Printable Latin-1 bytes stand for themselves; the other
/// 68 bytes (controls, space, DEL, NBSP, soft hyphen) are moved to U+0100 and up, in byte order.
/// </summary>
internal static class ByteLevelAlphabet
{
    private const int NoByte = -1;

    // Indexed by character; only U+0000..U+0143 are used by the alphabet.
    private static readonly short[] CharToByte = BuildCharToByte();

    /// <summary>The byte that <paramref name="c"/> stands for, or -1 when it is not in the alphabet.</summary>
    public static int ByteOf(char c) => c < CharToByte.Length ? CharToByte[c] : NoByte;

    /// <summary>
    /// The bytes that a vocabulary entry stands for. Entries with characters outside the alphabet
    /// (the added tokens stored verbatim, such as <c>&lt;｜begin▁of▁sentence｜&gt;</c>) are their own
    /// UTF-8 bytes, as in the Hugging Face byte-level decoder.
    /// </summary>
    public static byte[] BytesOf(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int b = ByteOf(token[i]);
            if (b == NoByte)
                return System.Text.Encoding.UTF8.GetBytes(token);
            bytes[i] = (byte)b;
        }
        return bytes;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[256 + 68];
        Array.Fill(map, (short)NoByte);
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[printable ? b : next++] = (short)b;
        }
        return map;
    }
}
