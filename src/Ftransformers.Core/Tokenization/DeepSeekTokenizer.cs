using Ftransformers.Formats;
using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Ftransformers.Tokenization;

/// <summary>
/// The DeepSeek-V3/R1 tokenizer: byte-level BPE with DeepSeek's pre-tokenizer and added tokens,
/// loaded from a Hugging Face tokenizer folder. Its ids are those of the reference tokenizers called
/// with <c>add_special_tokens=false</c> (checked against <c>golden_encodings.json</c>). Safe to share
/// between threads.
/// </summary>
public sealed class DeepSeekTokenizer : ITextTokenizer
{
    private readonly BpeTokenizer _bpe;
    // Id -> the bytes it stands for, packed: bytes of id i are _bytes[_byteStarts[i].._byteStarts[i + 1]].
    private readonly byte[] _bytes;
    private readonly int[] _byteStarts;
    private readonly bool[] _special;
    private readonly bool[] _added;

    private DeepSeekTokenizer(TokenizerDefinition definition, string directory)
    {
        string tokenizerPath = Path.Combine(directory, TokenizerFiles.TokenizerFileName);
        string configPath = Path.Combine(directory, TokenizerFiles.ConfigFileName);
        var addedTokens = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (AddedTokenEntry token in definition.AddedTokens)
            addedTokens[token.Content] = token.Id;

        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(definition.Vocabulary)
            {
                Merges = definition.Merges,
                SpecialTokens = addedTokens,
                PreTokenizer = new DeepSeekPreTokenizer(new AddedTokenMatcher(addedTokens.Keys)),
                ByteLevel = true,
                // No BeginningOfSentenceToken: BpeTokenizer would prepend it to every Encode call,
                // while the chat template already writes it.
            });
        }
        catch (InvalidOperationException e) // e.g. a merge of tokens missing from the vocabulary
        {
            throw new InvalidDataException($"'{tokenizerPath}': field 'model': {e.Message}", e);
        }

        int maxId = Math.Max(definition.Vocabulary.Values.DefaultIfEmpty(-1).Max(), definition.AddedTokens.Select(t => t.Id).DefaultIfEmpty(-1).Max());
        VocabSize = maxId + 1;

        // Added tokens win over vocabulary entries with the same id, as in Hugging Face's decode.
        var tokenText = new string?[VocabSize];
        foreach ((string text, int id) in definition.Vocabulary)
            tokenText[id] = text;
        _special = new bool[VocabSize];
        _added = new bool[VocabSize];
        foreach (AddedTokenEntry token in definition.AddedTokens)
        {
            tokenText[token.Id] = token.Content;
            _special[token.Id] = token.Special;
            _added[token.Id] = true;
        }

        var bytes = new List<byte>(VocabSize * 8);
        _byteStarts = new int[VocabSize + 1];
        for (int id = 0; id < VocabSize; id++)
        {
            _byteStarts[id] = bytes.Count;
            if (tokenText[id] is string text)
                bytes.AddRange(ByteLevelAlphabet.BytesOf(text));
        }
        _byteStarts[VocabSize] = bytes.Count;
        _bytes = bytes.ToArray();

        ChatFormat = definition.ChatFormat;
        BosToken = definition.BosToken;
        EosToken = definition.EosToken;
        BosTokenId = IdOf(BosToken, definition, configPath, "bos_token");
        EosTokenId = IdOf(EosToken, definition, configPath, "eos_token");
    }

    /// <summary>
    /// Loads the tokenizer from <c>tokenizer.json</c> (vocabulary, merges, added tokens) and
    /// <c>tokenizer_config.json</c> (BOS and EOS tokens) in <paramref name="directory"/>.
    /// </summary>
    /// <param name="directory">A folder in the Hugging Face layout, such as a DeepSeek-V3 checkpoint, or a GGUF file that carries the tokenizer.</param>
    /// <exception cref="FileNotFoundException">A file is missing; the message names it.</exception>
    /// <exception cref="InvalidDataException">A file is not valid JSON or lacks a field; the message names the file and field.</exception>
    public static DeepSeekTokenizer Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (directory.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) && File.Exists(directory))
        {
            using GgufFile file = GgufFile.Open(directory);
            return FromGguf(file);
        }
        TokenizerDefinition definition = TokenizerFiles.Read(directory);
        return new DeepSeekTokenizer(definition, directory);
    }

    /// <summary>The tokenizer a GGUF file carries (<c>tokenizer.ggml.*</c>).</summary>
    /// <exception cref="InvalidDataException">The file carries none, or another kind.</exception>
    public static DeepSeekTokenizer FromGguf(GgufFile file) => new(GgufTokenizer.Read(file), file.Path);

    /// <summary>The chat template <c>tokenizer_config.json</c> holds: DeepSeek-V3.1's (it has a thinking switch) or V3's.</summary>
    public ChatFormat ChatFormat { get; }

    /// <summary>The beginning-of-sentence token text, <c>&lt;｜begin▁of▁sentence｜&gt;</c> for DeepSeek-V3.</summary>
    public string BosToken { get; }

    /// <summary>The end-of-sentence token text, <c>&lt;｜end▁of▁sentence｜&gt;</c> for DeepSeek-V3.</summary>
    public string EosToken { get; }

    /// <summary>The id of <see cref="BosToken"/>.</summary>
    public int BosTokenId { get; }

    /// <summary>The id of <see cref="EosToken"/>.</summary>
    public int EosTokenId { get; }

    /// <summary>One more than the largest id of the vocabulary and the added tokens (128815 for DeepSeek-V3;
    /// the model's embedding table is larger, and ids beyond this have no text).</summary>
    public int VocabSize { get; }

    /// <summary>
    /// Whether <paramref name="id"/> is an added token flagged <c>special</c> in <c>tokenizer.json</c>
    /// (BOS, EOS, padding, placeholders). The chat and tool markers such as <c>&lt;｜User｜&gt;</c> are
    /// added tokens too but are not flagged special there.
    /// </summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    /// <inheritdoc/>
    public bool IsAddedToken(int id) => (uint)id < (uint)_added.Length && _added[id];

    /// <summary>
    /// Encodes <paramref name="text"/> to token ids without adding BOS or EOS. Added tokens that appear
    /// in the text (such as <c>&lt;｜User｜&gt;</c>) become their single id.
    /// </summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false);
    }

    /// <summary>
    /// Decodes ids to text. Added tokens, special ones included, appear as their text; bytes that do
    /// not form valid UTF-8 become U+FFFD; ids without a token (at or beyond <see cref="VocabSize"/>) are skipped.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var buffer = new ArrayBufferWriter<byte>();
        foreach (int id in ids)
            buffer.Write(TokenBytes(id));
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Starts decoding a stream of generated ids, one at a time.</summary>
    public IncrementalDecoder CreateIncrementalDecoder() => new(this);

    /// <summary>The bytes that <paramref name="id"/> stands for; empty for an id without a token.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) =>
        (uint)id < (uint)VocabSize ? _bytes.AsSpan(_byteStarts[id], _byteStarts[id + 1] - _byteStarts[id]) : default;

    private static int IdOf(string token, TokenizerDefinition definition, string configPath, string field)
    {
        foreach (AddedTokenEntry added in definition.AddedTokens)
        {
            if (added.Content == token)
                return added.Id;
        }
        if (definition.Vocabulary.TryGetValue(token, out int id))
            return id;
        throw new InvalidDataException($"'{configPath}': field '{field}' is '{token}', which is neither an added token nor in the vocabulary.");
    }
}
