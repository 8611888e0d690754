using System.Text.Json;
using Ftransformers.Generation;
using Ftransformers.Serving;
using Ftransformers.Tests.Generation.Grammar;
using Ftransformers.Tokenization;
using Json.Schema;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation;

/// <summary>
/// Constrained decoding through the whole engine: <c>synthetic:tiny</c> has random weights, so only the grammar
/// makes its output valid JSON, valid tool calls, or anything at all.
/// </summary>
[TestFixture]
public sealed class ConstrainedGenerationTests
{
    private InferenceSession _session = null!;

    [OneTimeSetUp]
    public void Load() => _session = InferenceSession.Load("synthetic:tiny");

    [OneTimeTearDown]
    public void Unload() => _session.Dispose();

    private static readonly JsonElement WeatherParameters = JsonDocument.Parse(
        """{"type":"object","properties":{"city":{"type":"string","maxLength":12},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""").RootElement;

    private static readonly JsonElement TimeParameters = JsonDocument.Parse(
        """{"type":"object","properties":{"zone":{"type":"string","maxLength":6}},"required":["zone"],"additionalProperties":false}""").RootElement;

    private static readonly ToolDefinition[] Tools =
    [
        new("get_weather", "The weather in a city.", WeatherParameters),
        new("get_time", "The time in a zone.", TimeParameters),
    ];

    private async Task<List<GenerationChunk>> Collect(GenerationRequest request)
    {
        var chunks = new List<GenerationChunk>();
        await foreach (GenerationChunk chunk in _session.GenerateAsync(request))
            chunks.Add(chunk);
        return chunks;
    }

    [Test]
    public async Task TwoHundredSeededRequestsAcrossTheSchemasAreAllValid()
    {
        int[] schemas = [.. Enumerable.Range(0, 12)];   // the bounded schemas: a random model finishes them
        for (int wave = 0; wave < 200; wave += 20)
        {
            var runs = Enumerable.Range(wave, 20).Select(async i =>
            {
                string schemaText = JsonSchemaGrammarTests.Schemas[schemas[i % schemas.Length]];
                var request = new GenerationRequest
                {
                    Prompt = "Answer in JSON:",
                    MaxTokens = 1500,
                    Sampling = new SamplingOptions { Temperature = 1, Seed = i },
                    ResponseFormat = ResponseFormat.ForJsonSchema(JsonDocument.Parse(schemaText).RootElement),
                };
                List<GenerationChunk> chunks = await Collect(request);
                return (i, schemaText, text: string.Concat(chunks.Select(c => c.Text)), finish: chunks[^1].FinishReason);
            });
            foreach ((int i, string schemaText, string text, FinishReason? finish) in await Task.WhenAll(runs))
            {
                Assert.That(finish, Is.EqualTo(FinishReason.Stop), $"request {i} did not finish its JSON: {text}");
                EvaluationResults result = JsonSchema.FromText(schemaText).Evaluate(JsonDocument.Parse(text).RootElement);
                Assert.That(result.IsValid, Is.True, $"request {i}: {text} against {schemaText}");
            }
        }
    }

    [Test]
    public async Task JsonObjectFormatGivesAnObjectOrIsCutByMaxTokens()
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var chunks = await Collect(new GenerationRequest
            {
                Prompt = "{", MaxTokens = 300, Sampling = new SamplingOptions { Seed = seed }, ResponseFormat = ResponseFormat.JsonObject,
            });
            string text = string.Concat(chunks.Select(c => c.Text));
            Assert.That(text, Does.StartWith("{"));
            if (chunks[^1].FinishReason == FinishReason.Stop)
                Assert.That(JsonDocument.Parse(text).RootElement.ValueKind, Is.EqualTo(JsonValueKind.Object), text);
        }
    }

    [Test]
    public async Task AForcedToolCallNamesAToolAndCarriesValidArguments()
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var chunks = await Collect(new GenerationRequest
            {
                Messages = [ChatMessage.User("What is the weather in Paris?")],
                Tools = Tools,
                ToolChoice = ToolChoice.Required,
                MaxTokens = 600,
                Sampling = new SamplingOptions { Seed = seed },
            });
            GeneratedToolCall[] calls = [.. chunks.SelectMany(c => c.ToolCalls)];
            Assert.That(chunks[^1].FinishReason, Is.EqualTo(FinishReason.ToolCalls), $"seed {seed}");
            Assert.That(calls, Is.Not.Empty);
            Assert.That(calls.Length, Is.LessThanOrEqualTo(8));
            Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.Empty, "a forced call leaves no text");
            Assert.That(calls.Select(c => c.Id).Distinct().Count(), Is.EqualTo(calls.Length), "ids are unique");
            foreach (GeneratedToolCall call in calls)
            {
                ToolDefinition tool = Tools.Single(t => t.Name == call.Name);
                EvaluationResults result = JsonSchema.FromText(tool.Parameters!.Value.GetRawText()).Evaluate(JsonDocument.Parse(call.Arguments).RootElement);
                Assert.That(result.IsValid, Is.True, $"seed {seed}: {call.Name}({call.Arguments})");
            }
        }
    }

    [Test]
    public async Task ANamedToolChoiceCallsThatFunctionOnce()
    {
        for (int seed = 0; seed < 10; seed++)
        {
            var chunks = await Collect(new GenerationRequest
            {
                Messages = [ChatMessage.User("Time?")], Tools = Tools, ToolChoice = ToolChoice.Function("get_time"),
                MaxTokens = 300, Sampling = new SamplingOptions { Seed = seed },
            });
            GeneratedToolCall call = chunks.SelectMany(c => c.ToolCalls).Single();
            Assert.That(call.Name, Is.EqualTo("get_time"));
            // maxLength counts code points, as JSON Schema does.
            Assert.That(JsonDocument.Parse(call.Arguments).RootElement.GetProperty("zone").GetString()!.EnumerateRunes().Count(), Is.LessThanOrEqualTo(6));
            Assert.That(chunks[^1].FinishReason, Is.EqualTo(FinishReason.ToolCalls));
        }
    }

    [Test]
    public async Task UnderTheV31Format_AForcedCallIsWrittenAndReadTheV31Way()
    {
        using InferenceSession v31 = InferenceSession.Load(new InferenceSessionOptions { Model = "synthetic:tiny", ChatFormat = ChatFormat.DeepSeekV31 });
        for (int seed = 0; seed < 8; seed++)
        {
            var chunks = new List<GenerationChunk>();
            await foreach (GenerationChunk chunk in v31.GenerateAsync(new GenerationRequest
            {
                Messages = [ChatMessage.User("Weather?")], Tools = Tools, ToolChoice = ToolChoice.Function("get_weather"),
                MaxTokens = 300, Sampling = new SamplingOptions { Seed = seed },
            }))
                chunks.Add(chunk);
            string raw = v31.Tokenizer.Decode(chunks.SelectMany(c => c.TokenIds));
            Assert.That(raw, Does.StartWith("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"), "V3.1 writes the name, then the arguments");
            GeneratedToolCall call = chunks.SelectMany(c => c.ToolCalls).Single();
            EvaluationResults result = JsonSchema.FromText(WeatherParameters.GetRawText()).Evaluate(JsonDocument.Parse(call.Arguments).RootElement);
            Assert.That(result.IsValid, Is.True, call.Arguments);
        }
        Assert.That(v31.Tokenizer.Decode(v31.EncodePrompt(new GenerationRequest { Messages = [ChatMessage.User("hi")] })), Does.EndWith("<｜User｜>hi<｜Assistant｜></think>"));
    }

    [Test]
    public async Task ToolChoiceNoneNeverOpensToolCalls()
    {
        int opener = _session.Tokenizer.Encode(DeepSeekChatTemplate.ToolCallsBegin).Single();
        var request = new GenerationRequest
        {
            Messages = [ChatMessage.User("hi")], Tools = Tools, ToolChoice = ToolChoice.None, MaxTokens = 64, IgnoreEos = true,
            // The bias would make the opener certain; tool_choice none must still win.
            Sampling = new SamplingOptions { Seed = 3, LogitBias = new Dictionary<int, float> { [opener] = 100 } },
        };
        var chunks = await Collect(request);
        Assert.That(chunks.SelectMany(c => c.TokenIds), Does.Not.Contain(opener));
    }

    [Test]
    public async Task APromptListsTheToolsAfterTheSystemPrompt()
    {
        IReadOnlyList<int> ids = _session.EncodePrompt(new GenerationRequest { Messages = [ChatMessage.System("Be brief."), ChatMessage.User("hi")], Tools = Tools });
        string prompt = _session.Tokenizer.Decode(ids);
        Assert.That(prompt, Does.StartWith("<｜begin▁of▁sentence｜>Be brief.\n\n## Tools\n\n### Function\n\nYou have the following functions available:\n\n- `get_weather`:\n```json\n{\"name\":\"get_weather\",\"description\":\"The weather in a city.\",\"parameters\":{"));
        Assert.That(prompt, Does.EndWith("<｜User｜>hi<｜Assistant｜>"));
    }

    [Test]
    public async Task LogitBiasSteersWhatIsSampled()
    {
        int favourite = ByteTokenizer.ByteOffset + 'q';
        var biased = await Collect(new GenerationRequest
        {
            Prompt = "x", MaxTokens = 8, IgnoreEos = true,
            Sampling = SamplingOptions.Greedy with { LogitBias = new Dictionary<int, float> { [favourite] = 100 } },
        });
        Assert.That(biased.SelectMany(c => c.TokenIds), Is.All.EqualTo(favourite));
    }

    [Test]
    public async Task LogprobsAreTheModelsDistribution()
    {
        var chunks = await Collect(new GenerationRequest
        {
            Prompt = "x", MaxTokens = 6, IgnoreEos = true, Sampling = SamplingOptions.Greedy, Logprobs = true, TopLogprobs = 5,
        });
        foreach (GenerationChunk chunk in chunks)
        {
            TokenLogprob logprob = chunk.Logprobs!.Single();
            Assert.That(logprob.TokenId, Is.EqualTo(chunk.TokenIds.Single()));
            Assert.That(logprob.Top, Has.Count.EqualTo(5));
            Assert.That(logprob.Top.Select(t => t.Logprob), Is.Ordered.Descending);
            Assert.That(logprob.Top[0].TokenId, Is.EqualTo(logprob.TokenId), "greedy picks the most likely token");
            Assert.That(logprob.Top[0].Logprob, Is.EqualTo(logprob.Logprob));
            Assert.That(logprob.Top.Sum(t => Math.Exp(t.Logprob)), Is.LessThanOrEqualTo(1 + 1e-5));
            Assert.That(logprob.Logprob, Is.LessThanOrEqualTo(0));
        }
    }

    [Test]
    public void BadRequestsAreRefusedNamingTheField()
    {
        JsonElement unsupported = JsonDocument.Parse("""{"type":"string","format":"email"}""").RootElement;
        Assert.ThrowsAsync<Ftransformers.Generation.Grammar.JsonSchemaException>(() => Collect(new GenerationRequest { Prompt = "x", ResponseFormat = ResponseFormat.ForJsonSchema(unsupported) }));
        Assert.That(Assert.ThrowsAsync<ArgumentException>(() => Collect(new GenerationRequest { Prompt = "x", Tools = Tools }))!.ParamName, Is.EqualTo("Tools"));
        Assert.That(Assert.ThrowsAsync<ArgumentException>(() => Collect(new GenerationRequest { Messages = [ChatMessage.User("x")], Tools = Tools, ToolChoice = ToolChoice.Function("nope") }))!.ParamName, Is.EqualTo("ToolChoice"));
        Assert.That(Assert.ThrowsAsync<ArgumentException>(() => Collect(new GenerationRequest { Prompt = "x", ResponseFormat = ResponseFormat.JsonObject, IgnoreEos = true }))!.ParamName, Is.EqualTo("IgnoreEos"));
        Assert.That(Assert.ThrowsAsync<ArgumentException>(() => Collect(new GenerationRequest { Prompt = "x", Sampling = new SamplingOptions { LogitBias = new Dictionary<int, float> { [1_000_000] = 1 } } }))!.Message, Does.Contain("1000000"));
    }
}
