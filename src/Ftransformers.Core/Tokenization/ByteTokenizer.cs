using System.Text;

namespace Ftransformers.Tokenization;

/// <summary>
/// A tokenizer with one id per UTF-8 byte plus DeepSeek's chat and sentence markers, for synthetic and test
/// models that ship no tokenizer.json. Ids 0 and 1 are BOS and EOS, as in DeepSeek-V3's config.
/// </summary>
public sealed class ByteTokenizer : ITextTokenizer
{
    private static readonly string[] Specials =
    [
        "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
        "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
        "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
    ];

    private static readonly byte[][] SpecialBytes = Array.ConvertAll(Specials, Encoding.UTF8.GetBytes);

    /// <summary>The id of byte 0; byte b is id <c>ByteOffset + b</c>.</summary>
    public const int ByteOffset = 16;

    /// <summary>The shared instance (the tokenizer has no state).</summary>
    public static ByteTokenizer Instance { get; } = new();

    /// <inheritdoc/>
    public string BosToken => Specials[0];

    /// <inheritdoc/>
    public int BosTokenId => 0;

    /// <inheritdoc/>
    public int EosTokenId => 1;

    /// <inheritdoc/>
    public int VocabSize => ByteOffset + 256;

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            int special = Array.FindIndex(Specials, s => text.AsSpan(i).StartsWith(s, StringComparison.Ordinal));
            if (special >= 0)
            {
                ids.Add(special);
                i += Specials[special].Length;
                continue;
            }
            int next = text.IndexOf("<｜", i + 1, StringComparison.Ordinal);
            int end = next < 0 ? text.Length : next;
            foreach (byte b in Encoding.UTF8.GetBytes(text[i..end]))
                ids.Add(ByteOffset + b);
            i = end;
        }
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
            bytes.AddRange(TokenBytes(id).ToArray());
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <inheritdoc/>
    public bool IsAddedToken(int id) => (uint)id < (uint)Specials.Length;

    /// <inheritdoc/>
    public ReadOnlySpan<byte> TokenBytes(int id) => id switch
    {
        >= 0 and < ByteOffset when id < Specials.Length => SpecialBytes[id],
        >= ByteOffset and < ByteOffset + 256 => ByteValues.AsSpan(id - ByteOffset, 1),
        _ => default,
    };

    private static readonly byte[] ByteValues = Enumerable.Range(0, 256).Select(b => (byte)b).ToArray();
}
