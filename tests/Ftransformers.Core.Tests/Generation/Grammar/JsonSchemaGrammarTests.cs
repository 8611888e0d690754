using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ftransformers.Generation.Grammar;
using Ftransformers.Tokenization;
using Json.Schema;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation.Grammar;

/// <summary>
/// Walks grammars with random allowed tokens (what a random model does under the mask) and checks every output with
/// an independent JSON Schema validator (JsonSchema.Net), on the byte tokenizer and the real DeepSeek-V3 vocabulary.
/// </summary>
[TestFixture]
public sealed class JsonSchemaGrammarTests
{
    internal static readonly string[] Schemas =
    [
        """{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","age","ok"],"additionalProperties":false}""",
        """{"type":"object","properties":{"a":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"string","maxLength":3}},"required":["y"]},"b":{"type":"null"}},"required":["a"]}""",
        """{"type":"array","items":{"enum":["red","green","blue"]},"minItems":1,"maxItems":4}""",
        """{"anyOf":[{"type":"string","maxLength":5},{"type":"integer"},{"type":"null"}]}""",
        """{"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":1}},"required":["value","children"]}},"$ref":"#/$defs/node"}""",
        """{"type":"object","properties":{"greeting":{"const":"héllo 日本"},"mood":{"enum":["😀","tab\there","quote\"d",7,null]}},"required":["greeting","mood"]}""",
        """{"type":"array","items":{"type":"number"},"maxItems":3}""",
        """{"type":"object","additionalProperties":false}""",
        """{"type":["string","null"],"maxLength":6}""",
        """{"anyOf":[{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number"}},"required":["kind","r"]},{"type":"object","properties":{"kind":{"const":"rect"},"w":{"type":"integer"},"h":{"type":"integer"}},"required":["kind","w","h"]}]}""",
        """{"type":"string","minLength":2,"maxLength":4}""",
        """{"type":"array","items":{"type":"array","items":{"type":"boolean"},"maxItems":2},"minItems":2,"maxItems":3}""",
        """{"type":"object","properties":{"tags":{"type":"object","additionalProperties":{"type":"integer"}}},"required":["tags"]}""",
    ];

    private static DeepSeekTokenizer? _deepSeek;

    private static DeepSeekTokenizer DeepSeek => _deepSeek ??= DeepSeekTokenizer.Load(Fixtures.Tokenizer);

    [Test]
    public void RandomWalksOverTheByteTokenizerAreValid([Range(0, 12)] int schema) => AssertWalksAreValid(Schemas[schema], ByteTokenizer.Instance, walks: 15);

    [Test]
    public void RandomWalksOverTheDeepSeekVocabularyAreValid([Range(0, 11)] int schema) => AssertWalksAreValid(Schemas[schema], DeepSeek, walks: 3);

    [Test]
    public void JsonObjectModeProducesAnObject()
    {
        var grammar = new TokenGrammar(JsonSchemaGrammar.AnyObject, ByteTokenizer.Instance);
        for (int seed = 0; seed < 20; seed++)
        {
            string? output = Walk(grammar, new Random(seed), maxTokens: 4000);
            if (output == null)
                continue;   // a free object may run past the walk's budget; what ended must be an object
            Assert.That(JsonNode.Parse(output), Is.InstanceOf<JsonObject>(), output);
        }
    }

    [Test]
    public void TheMaskAllowsExactlyTheTokensThatFit()
    {
        var grammar = new TokenGrammar(Compile("""{"enum":["ab","ac"]}"""), ByteTokenizer.Instance);
        GrammarState start = GrammarState.Initial(grammar.Root);
        Assert.That(Allowed(grammar, start), Is.EqualTo(new[] { Id('"') }));
        GrammarState afterA = grammar.Advance(grammar.Advance(start, Id('"'))!, Id('a'))!;
        Assert.That(Allowed(grammar, afterA), Is.EqualTo(new[] { Id('b'), Id('c') }));
        GrammarState done = grammar.Advance(grammar.Advance(afterA, Id('c'))!, Id('"'))!;
        Assert.That(Allowed(grammar, done), Is.EqualTo(new[] { ByteTokenizer.Instance.EosTokenId }));
    }

    [Test]
    public void DeepSeekTokensThatSpanSeveralSymbolsAreAllowedWhenEveryByteFits()
    {
        var grammar = new TokenGrammar(Compile("""{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}"""), DeepSeek);
        TokenMask mask = grammar.Mask(GrammarState.Initial(grammar.Root));
        // `{"` is one token of the DeepSeek vocabulary and begins the only allowed output; `{}` does not fit.
        Assert.That(DeepSeek.Encode("{\"").Count, Is.EqualTo(1));
        Assert.That(mask.IsAllowed(DeepSeek.Encode("{\"")[0]), Is.True);
        Assert.That(mask.IsAllowed(DeepSeek.Encode("{}")[0]), Is.False);
        Assert.That(mask.IsAllowed(DeepSeek.EosTokenId), Is.False);
    }

    [Test]
    public void ATokenEndingMidCharacterIsAllowedAndTheNextMustFinishIt()
    {
        var grammar = new TokenGrammar(Compile("""{"type":"string"}"""), ByteTokenizer.Instance);
        GrammarState inString = grammar.Advance(GrammarState.Initial(grammar.Root), Id('"'))!;
        GrammarState lead = grammar.Advance(inString, Id(0xE6))!;   // first byte of a three-byte character
        Assert.That(Allowed(grammar, lead), Is.EqualTo(Enumerable.Range(0x80, 0x40).Select(Id)));
        Assert.That(grammar.Advance(inString, Id(0xC0)), Is.Null, "an overlong lead byte is never valid UTF-8");
        Assert.That(grammar.Advance(inString, Id(0x0A)), Is.Null, "a raw newline must be escaped inside a JSON string");
    }

    [TestCase("""{"type":"string","format":"date"}""", "#/format")]
    [TestCase("""{"type":"object","properties":{"n":{"type":"number","minimum":1}}}""", "#/properties/n/minimum")]
    [TestCase("""{"oneOf":[{"type":"string"}]}""", "#/oneOf")]
    [TestCase("""{"type":"thing"}""", "#/type")]
    [TestCase("""{"$ref":"#/$defs/missing"}""", "#/$ref")]
    [TestCase("""{"$ref":"http://example.com/schema"}""", "#/$ref")]
    [TestCase("""{"type":"object","properties":{"a":{}},"required":["b"]}""", "#/required")]
    [TestCase("""{"type":"array","maxItems":-1}""", "#/maxItems")]
    [TestCase("""{"type":"string","pattern":"^a+$"}""", "#/pattern")]
    [TestCase("""[1]""", "#")]
    public void AnUnsupportedOrMalformedSchemaIsRefusedNamingWhere(string schema, string path)
    {
        var error = Assert.Throws<Ftransformers.Generation.Grammar.JsonSchemaException>(() => Compile(schema))!;
        Assert.That(error.SchemaPath, Is.EqualTo(path));
    }

    [Test]
    public void KeywordsJsonSchemaDoesNotDefineAreAnnotations()
    {
        // Semantic Kernel writes a function's description as "condition"; unknown keywords constrain nothing.
        var grammar = new TokenGrammar(Compile("""{"type":"object","condition":"x","properties":{"d":{"type":"integer","x-unit":"days"}},"required":["d"]}"""), ByteTokenizer.Instance);
        string output = Walk(grammar, new Random(1), 200)!;
        Assert.That(JsonDocument.Parse(output).RootElement.GetProperty("d").ValueKind, Is.EqualTo(JsonValueKind.Number));
    }

    [Test]
    public void EveryMaskIsExactlyTheTokensThatAdvanceTheGrammar([Values(0, 5, 8, 10, 12)] int schema)
    {
        // The mask's shortcuts (whole subtrees of string content) must agree with trying every token one by one.
        var grammar = new TokenGrammar(Compile(Schemas[schema]), DeepSeek);
        var random = new Random(schema);
        GrammarState state = GrammarState.Initial(grammar.Root);
        for (int step = 0; step < 12; step++)
        {
            TokenMask mask = grammar.Mask(state);
            int[] expected = [.. Enumerable.Range(0, DeepSeek.VocabSize).Where(t =>
                t == DeepSeek.EosTokenId ? state.CanEnd : grammar.Advance(state, t) != null)];
            int[] actual = [.. Enumerable.Range(0, mask.VocabSize).Where(mask.IsAllowed)];
            Assert.That(actual, Is.EqualTo(expected), $"step {step}");
            if (actual.Length == 1 && actual[0] == DeepSeek.EosTokenId)
                break;
            int token = actual[random.Next(actual.Length)];
            state = grammar.Advance(state, token)!;
        }
    }

    [TestCase("""{"$ref":"#"}""", "#")]
    [TestCase("""{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}""", "#/$defs/a")]
    [TestCase("""{"anyOf":[{"$ref":"#"},{"type":"null"}]}""", "#")]
    public void AReferenceThatReachesItselfBeforeAnyValue_IsRefused(string schema, string path)
    {
        var error = Assert.Throws<Ftransformers.Generation.Grammar.JsonSchemaException>(() => Compile(schema))!;
        Assert.That(error.SchemaPath, Is.EqualTo(path));
        Assert.That(error.Message, Does.Contain("refers to itself"));
    }

    [TestCase("""{"type":"object","properties":{"c":{"$ref":"#"}},"required":["c"]}""", "#", "no finite JSON value")]
    [TestCase("""{"type":"array","items":{"$ref":"#"},"minItems":1}""", "#", "no finite JSON value")]
    [TestCase("""{"type":"string","minLength":5,"maxLength":2}""", "#/minLength", "exceeds")]
    [TestCase("""{"type":"array","minItems":3,"maxItems":1}""", "#/minItems", "exceeds")]
    [TestCase("""{"type":"object","properties":{"a":{"type":"string"}},"anyOf":[{"required":["a"]}]}""", "#/type", "move it into each branch")]
    [TestCase("""{"type":"string","enum":["a",1]}""", "#/enum", "not of type")]
    [TestCase("""{"enum":["a"],"minLength":3}""", "#/minLength", "the listed values are the whole answer")]
    [TestCase("""{"minLength":1,"minItems":1}""", "#", "several types")]
    public void ASchemaNoValueFits_IsRefusedSayingWhy(string schema, string path, string message)
    {
        var error = Assert.Throws<Ftransformers.Generation.Grammar.JsonSchemaException>(() => Compile(schema))!;
        Assert.That(error.SchemaPath, Is.EqualTo(path), error.Message);
        Assert.That(error.Message, Does.Contain(message));
    }

    [Test]
    public void KeywordsOfOneTypeImplyIt()
    {
        var grammar = new TokenGrammar(Compile("""{"minLength":2,"maxLength":3}"""), ByteTokenizer.Instance);
        for (int seed = 0; seed < 10; seed++)
            Assert.That(JsonDocument.Parse(Walk(grammar, new Random(seed), 50)!).RootElement.GetString()!.EnumerateRunes().Count(), Is.InRange(2, 3));
    }

    [Test]
    public void MasksInsideEscapesAndCharacters_EqualTryingEveryToken()
    {
        // The trie's string shortcuts are worked out from a character boundary; from inside an escape or a
        // multi-byte character, and right after one, they must not change the answer.
        var grammar = new TokenGrammar(Compile("""{"type":"object","properties":{"s":{"type":"string"}},"required":["s"]}"""), DeepSeek);
        foreach (string prefix in (string[])["{\"s\":\"\\", "{\"s\":\"\\\\", "{\"s\":\"\\u", "{\"s\":\"\\ud", "{\"s\":\"ab\\", "{\"s\":\"\u00e9"])
        {
            byte[] bytes = System.Text.Encoding.UTF8.GetBytes(prefix);
            var scratch = new List<GrammarStack?>();
            GrammarState state = GrammarState.Initial(grammar.Root).Advance(prefix == "{\"s\":\"\u00e9" ? bytes[..^1] : bytes, scratch)!;
            int[] expected = [.. Enumerable.Range(0, DeepSeek.VocabSize).Where(t => t == DeepSeek.EosTokenId ? state.CanEnd : grammar.Advance(state, t) != null)];
            TokenMask mask = grammar.Mask(state);
            Assert.That(Enumerable.Range(0, mask.VocabSize).Where(mask.IsAllowed), Is.EqualTo(expected), prefix);
        }
    }

    [Test]
    public void EscapesOfSurrogatesAreNotWritten_OtherDEscapesAre()
    {
        var grammar = new TokenGrammar(Compile("""{"type":"string"}"""), ByteTokenizer.Instance);
        var scratch = new List<GrammarStack?>();
        GrammarState start = GrammarState.Initial(grammar.Root);
        Assert.That(start.Advance("\"\\ud7ff\""u8, scratch), Is.Not.Null, "U+D7FF is a character");
        Assert.That(start.Advance("\"\\uD55C\""u8, scratch), Is.Not.Null, "Hangul");
        Assert.That(start.Advance("\"\\ud800"u8, scratch), Is.Null, "a surrogate");
        Assert.That(start.Advance("\"\\uDFFF"u8, scratch), Is.Null, "a surrogate");
    }

    [Test]
    public void UnboundedArraysObjectsAndStrings_RepeatTheirStates()
    {
        var scratch = new List<GrammarStack?>();
        var array = GrammarState.Initial(Compile("""{"type":"array","items":{"type":"integer"}}"""));
        Assert.That(array.Advance("[1,"u8, scratch), Is.EqualTo(array.Advance("[1,2,"u8, scratch)));
        var obj = GrammarState.Initial(JsonSchemaGrammar.AnyObject);
        Assert.That(obj.Advance("{\"a\":1,"u8, scratch), Is.EqualTo(obj.Advance("{\"a\":1,\"bc\":2,"u8, scratch)));
        var text = GrammarState.Initial(Compile("""{"type":"string"}"""));
        Assert.That(text.Advance("\"a\u00e9"u8, scratch), Is.EqualTo(text.Advance("\"abc"u8, scratch)));
    }

    [Test]
    public void BranchesThatStayAlikeWithoutEnd_AreStoppedWithAClearError()
    {
        var state = GrammarState.Initial(Compile("""{"anyOf":[{"type":"array","items":{"$ref":"#"}},{"type":"array","items":{"$ref":"#"}}]}"""));
        var error = Assert.Throws<InvalidOperationException>(() => state.Advance("[[[[[[[[[[["u8, new List<GrammarStack?>()))!;
        Assert.That(error.Message, Does.Contain("alternatives"));
    }

    internal static GrammarNode Compile(string schema) => JsonSchemaGrammar.Compile(JsonDocument.Parse(schema).RootElement);

    private static void AssertWalksAreValid(string schemaText, ITextTokenizer tokenizer, int walks)
    {
        var grammar = new TokenGrammar(Compile(schemaText), tokenizer);
        JsonSchema schema = JsonSchema.FromText(schemaText);
        for (int seed = 0; seed < walks; seed++)
        {
            string output = Walk(grammar, new Random(seed), maxTokens: 3000) ?? throw new AssertionException($"Walk {seed} did not end within 3000 tokens.");
            EvaluationResults result = schema.Evaluate(JsonDocument.Parse(output).RootElement);
            Assert.That(result.IsValid, Is.True, $"seed {seed}: {output}");
        }
    }

    // Picks uniformly among the allowed tokens, as a random model under the mask does; ends on EOS. Null: out of budget.
    internal static string? Walk(TokenGrammar grammar, Random random, int maxTokens)
    {
        var bytes = new List<byte>();
        var constraint = new GrammarConstraint(grammar);
        for (int i = 0; i < maxTokens; i++)
        {
            TokenMask mask = constraint.Mask();
            int[] allowed = [.. Enumerable.Range(0, mask.VocabSize).Where(mask.IsAllowed)];
            Assert.That(allowed, Is.Not.Empty, "the grammar allowed no token");
            int token = allowed[random.Next(allowed.Length)];
            constraint.Accept(token);
            if (token == grammar.Tokenizer.EosTokenId)
                return Encoding.UTF8.GetString([.. bytes]);
            bytes.AddRange(grammar.Tokenizer.TokenBytes(token).ToArray());
        }
        return null;
    }

    private static int Id(int b) => ByteTokenizer.ByteOffset + b;

    private static int[] Allowed(TokenGrammar grammar, GrammarState state)
    {
        TokenMask mask = grammar.Mask(state);
        return [.. Enumerable.Range(0, mask.VocabSize).Where(mask.IsAllowed)];
    }
}
