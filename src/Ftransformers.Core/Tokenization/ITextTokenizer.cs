namespace Ftransformers.Tokenization;

/// <summary>Turns text into token ids and back; what a session needs of a tokenizer.</summary>
public interface ITextTokenizer
{
    /// <summary>The beginning-of-sentence token text (the chat format starts with it).</summary>
    string BosToken { get; }

    /// <summary>The id of <see cref="BosToken"/>.</summary>
    int BosTokenId { get; }

    /// <summary>The end-of-sentence token's id.</summary>
    int EosTokenId { get; }

    /// <summary>One more than the largest id the tokenizer produces.</summary>
    int VocabSize { get; }

    /// <summary>Encodes text without adding BOS or EOS; special tokens written in the text become their ids.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>Decodes ids to text.</summary>
    string Decode(IEnumerable<int> ids);

    /// <summary>The UTF-8 bytes a token stands for; empty for an id without a token.</summary>
    ReadOnlySpan<byte> TokenBytes(int id);

    /// <summary>
    /// Whether <paramref name="id"/> is an added token (BOS, EOS, the chat and tool markers): the encoder writes it
    /// whole wherever its text appears, so constrained decoding treats it as one symbol, never as its bytes.
    /// </summary>
    bool IsAddedToken(int id);

    /// <summary>Starts decoding a stream of generated ids, one at a time.</summary>
    IncrementalDecoder CreateIncrementalDecoder() => new(this);
}
