using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Ftransformers.Generation.Grammar;
using Ftransformers.Tokenization;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Constrained decoding's cost per token with the DeepSeek-V3 vocabulary (129,280 tokens) on a nested schema: work out
/// the mask, apply it to a row of logits, step past the token, replaying the first <see cref="Tokens"/> tokens of a
/// valid document. Cold: a fresh grammar each operation, so every state's mask is a walk of the vocabulary's trie;
/// Warm: a grammar that served the same schema before, its masks cached (a server keeps grammars per schema).
/// Per token = median / Tokens.
/// </summary>
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 2, iterationCount: 9)]
public class GrammarMaskBenchmark
{
    /// <summary>Tokens replayed per operation.</summary>
    public const int Tokens = 64;

    private const string Schema = """
        {"type":"object","properties":{
          "customer":{"type":"object","properties":{"name":{"type":"string"},"email":{"type":"string"},"vip":{"type":"boolean"}},"required":["name","email","vip"],"additionalProperties":false},
          "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer"},"price":{"type":"number"},"size":{"enum":["S","M","L","XL"]}},"required":["sku","qty","price"],"additionalProperties":false}},
          "note":{"anyOf":[{"type":"string"},{"type":"null"}]}},
         "required":["customer","items","note"],"additionalProperties":false}
        """;

    private const string Document =
        """{"customer":{"name":"Zoë Müller","email":"zoe@example.com","vip":true},"items":[{"sku":"A-100","qty":2,"price":19.99,"size":"M"},{"sku":"B-7","qty":1,"price":5.5},{"sku":"C-42","qty":12,"price":0.25,"size":"XL"}],"note":"Leave at the door, 谢谢"}""";

    private DeepSeekTokenizer _tokenizer = null!;
    private GrammarNode _root = null!;
    private TokenGrammar _warm = null!;
    private int[] _tokens = null!;
    private float[] _logits = null!;

    /// <summary>Whether the grammar's masks are already cached.</summary>
    [Params(false, true)]
    public bool Warm { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _tokenizer = DeepSeekTokenizer.Load(RepositoryFiles.Tokenizer);
        _root = JsonSchemaGrammar.Compile(JsonDocument.Parse(Schema).RootElement);
        _tokens = [.. _tokenizer.Encode(Document).Take(Tokens)];
        if (_tokens.Length < Tokens)
            throw new InvalidOperationException($"The document has {_tokens.Length} tokens; the benchmark replays {Tokens}.");
        _logits = new float[_tokenizer.VocabSize];
        _warm = new TokenGrammar(_root, _tokenizer);
        Replay(_warm);
    }

    [Benchmark(OperationsPerInvoke = Tokens)]
    public int MaskPerToken() => Replay(Warm ? _warm : new TokenGrammar(_root, _tokenizer));

    private int Replay(TokenGrammar grammar)
    {
        GrammarState state = GrammarState.Initial(grammar.Root);
        int allowed = 0;
        foreach (int token in _tokens)
        {
            TokenMask mask = grammar.Mask(state);
            mask.Apply(_logits);
            allowed += mask.IsAllowed(token) ? 1 : throw new InvalidOperationException($"Token {token} is not allowed by the grammar.");
            state = grammar.Advance(state, token) ?? throw new InvalidOperationException($"Token {token} does not advance the grammar.");
        }
        return allowed;
    }
}
