using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Json.Schema;
using NUnit.Framework;

#pragma warning disable OPENAI001 // Seed is marked experimental by the client; the server honours it
using OpenAI;
using OpenAI.Chat;

namespace Ftransformers.Tests.Server;

/// <summary>
/// Tool calls, structured output, logprobs and n through the OpenAI-compatible server on real Kestrel, with the
/// official OpenAI .NET client. synthetic:tiny has random weights: only the grammar makes its calls and JSON valid.
/// </summary>
[TestFixture]
public sealed class OpenAIToolsAndFormatsTests
{
    private const string Key = "sk-test-key";
    private TestServer _server = null!;
    private HttpClient _http = null!;
    private ChatClient _chat = null!;

    private const string WeatherSchema =
        """{"type":"object","properties":{"city":{"type":"string","maxLength":10},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";

    private const string AnswerSchema =
        """{"type":"object","properties":{"answer":{"type":"string","maxLength":8},"confidence":{"type":"number"},"tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3}},"required":["answer","confidence","tags"],"additionalProperties":false}""";

    [OneTimeSetUp]
    public async Task Start()
    {
        _server = await TestServer.StartAsync(apiKey: Key);
        _http = new HttpClient { BaseAddress = _server.Address, Timeout = TimeSpan.FromSeconds(120) };
        _chat = new OpenAIClient(new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "v1") }).GetChatClient(TestServer.Model);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    private static ChatTool Weather => ChatTool.CreateFunctionTool("get_weather", "The weather in a city.", BinaryData.FromString(WeatherSchema));

    private static ChatTool Clock => ChatTool.CreateFunctionTool("get_time", "The time.", BinaryData.FromString("""{"type":"object","properties":{},"additionalProperties":false}"""));

    private static void AssertValid(string schema, string json) =>
        Assert.That(JsonSchema.FromText(schema).Evaluate(JsonDocument.Parse(json).RootElement).IsValid, Is.True, json);

    [Test]
    public async Task AToolRoundTrip_CallThenResultThenAnswer()
    {
        var messages = new List<ChatMessage> { new UserChatMessage("What is the weather in Oslo?") };
        var options = new ChatCompletionOptions { Tools = { Weather, Clock }, ToolChoice = ChatToolChoice.CreateRequiredChoice(), MaxOutputTokenCount = 200, Seed = 1 };
        ChatCompletion call = (await _chat.CompleteChatAsync(messages, options)).Value;

        Assert.That(call.FinishReason, Is.EqualTo(ChatFinishReason.ToolCalls));
        Assert.That(call.ToolCalls, Is.Not.Empty);
        foreach (ChatToolCall toolCall in call.ToolCalls)
        {
            Assert.That(toolCall.Id, Does.StartWith("call_"));
            Assert.That(toolCall.FunctionName, Is.AnyOf("get_weather", "get_time"));
            if (toolCall.FunctionName == "get_weather")
                AssertValid(WeatherSchema, toolCall.FunctionArguments.ToString());
            else
                Assert.That(toolCall.FunctionArguments.ToString(), Is.EqualTo("{}"));
        }

        messages.Add(new AssistantChatMessage(call));
        foreach (ChatToolCall toolCall in call.ToolCalls)
            messages.Add(new ToolChatMessage(toolCall.Id, """{"temperature": 3}"""));
        ChatCompletion answer = (await _chat.CompleteChatAsync(messages, new ChatCompletionOptions { Tools = { Weather }, ToolChoice = ChatToolChoice.CreateNoneChoice(), MaxOutputTokenCount = 5 })).Value;
        Assert.That(answer.FinishReason, Is.AnyOf(ChatFinishReason.Stop, ChatFinishReason.Length));
        Assert.That(answer.ToolCalls, Is.Empty);

        // The tool result reached the prompt the model saw, in the template's tool-output block.
        var last = _server.Session.LastRequest!;
        Assert.That(last.Messages!.Select(m => m.Role), Is.EqualTo(new[] { "user", "assistant" }.Concat(call.ToolCalls.Select(_ => "tool"))));
        Assert.That(last.Messages![1].ToolCalls!.Select(c => c.Name), Is.EqualTo(call.ToolCalls.Select(c => c.FunctionName)));
    }

    [Test]
    public async Task StreamedToolCallDeltas_ReassembleIntoValidCalls()
    {
        var options = new ChatCompletionOptions { Tools = { Weather }, ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather"), MaxOutputTokenCount = 200, Seed = 4 };
        var ids = new Dictionary<int, string>();
        var names = new Dictionary<int, string>();
        var arguments = new Dictionary<int, StringBuilder>();
        ChatFinishReason? finish = null;
        int pieces = 0;
        await foreach (StreamingChatCompletionUpdate update in _chat.CompleteChatStreamingAsync([new UserChatMessage("Weather?")], options))
        {
            foreach (StreamingChatToolCallUpdate delta in update.ToolCallUpdates)
            {
                pieces++;
                if (pieces == 1)
                    Assert.That((delta.ToolCallId, delta.FunctionName), Is.Not.EqualTo(((string?)null, (string?)null)), "the first piece names the call");
                if (delta.ToolCallId != null)
                    ids[delta.Index] = delta.ToolCallId;
                if (delta.FunctionName != null)
                    names[delta.Index] = delta.FunctionName;
                (arguments.TryGetValue(delta.Index, out StringBuilder? sb) ? sb : arguments[delta.Index] = new StringBuilder()).Append(delta.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.That(finish, Is.EqualTo(ChatFinishReason.ToolCalls));
        Assert.That(names, Is.EqualTo(new Dictionary<int, string> { [0] = "get_weather" }), "a named tool choice makes exactly one call");
        Assert.That(ids[0], Does.StartWith("call_"));
        AssertValid(WeatherSchema, arguments[0].ToString());
        Assert.That(pieces, Is.GreaterThan(2), "the arguments stream as they are generated, as OpenAI streams them");
    }

    [Test]
    public async Task JsonSchemaResponses_AreValidForEverySeed()
    {
        for (int seed = 0; seed < 8; seed++)
        {
            var options = new ChatCompletionOptions
            {
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("answer", BinaryData.FromString(AnswerSchema), jsonSchemaIsStrict: true),
                MaxOutputTokenCount = 400, Seed = seed,
            };
            ChatCompletion completion = (await _chat.CompleteChatAsync([new UserChatMessage("Answer.")], options)).Value;
            Assert.That(completion.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
            AssertValid(AnswerSchema, completion.Content[0].Text);
        }
    }

    [Test]
    public async Task JsonObjectResponses_StartAnObject()
    {
        var options = new ChatCompletionOptions { ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), MaxOutputTokenCount = 300, Seed = 2 };
        ChatCompletion completion = (await _chat.CompleteChatAsync([new UserChatMessage("JSON please")], options)).Value;
        Assert.That(completion.Content[0].Text, Does.StartWith("{"));
        if (completion.FinishReason == ChatFinishReason.Stop)
            Assert.That(JsonDocument.Parse(completion.Content[0].Text).RootElement.ValueKind, Is.EqualTo(JsonValueKind.Object));
    }

    [Test]
    public async Task Logprobs_ComeWithEachTokenAndTheirTopAlternatives()
    {
        var options = new ChatCompletionOptions { IncludeLogProbabilities = true, TopLogProbabilityCount = 3, Temperature = 0, MaxOutputTokenCount = 6 };
        ChatCompletion completion = (await _chat.CompleteChatAsync([new UserChatMessage("Hi")], options)).Value;
        Assert.That(completion.ContentTokenLogProbabilities, Has.Count.EqualTo(completion.Usage.OutputTokenCount));
        Assert.That(string.Concat(completion.ContentTokenLogProbabilities.Select(l => Encoding.UTF8.GetString(l.Utf8Bytes!.Value.Span))), Does.StartWith(completion.Content[0].Text));
        foreach (ChatTokenLogProbabilityDetails token in completion.ContentTokenLogProbabilities)
        {
            Assert.That(token.TopLogProbabilities, Has.Count.EqualTo(3));
            Assert.That(token.TopLogProbabilities.Select(t => t.LogProbability), Is.Ordered.Descending);
            Assert.That(token.TopLogProbabilities[0].LogProbability, Is.EqualTo(token.LogProbability), "greedy picks the most likely token");
            Assert.That(token.TopLogProbabilities.Sum(t => Math.Exp(t.LogProbability)), Is.LessThanOrEqualTo(1 + 1e-5));
        }
    }

    [Test]
    public async Task CompletionsLogprobs_FollowTheLegacyShape()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/completions", """{"model":"tiny","prompt":"Once","max_tokens":4,"temperature":0,"logprobs":2,"ignore_eos":true}"""));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        JsonElement logprobs = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.That(logprobs.GetProperty("tokens").GetArrayLength(), Is.EqualTo(4));
        Assert.That(logprobs.GetProperty("token_logprobs").EnumerateArray().Select(l => l.GetSingle()), Is.All.LessThanOrEqualTo(0));
        Assert.That(logprobs.GetProperty("top_logprobs").EnumerateArray().Select(t => t.EnumerateObject().Count()), Is.All.InRange(1, 2));
        Assert.That(logprobs.GetProperty("text_offset")[0].GetInt32(), Is.Zero);
    }

    [Test]
    public async Task NChoices_AreGeneratedAndCountedTogether([Values(false, true)] bool stream)
    {
        string body = $$"""{"model":"tiny","messages":[{"role":"user","content":"Tell me"}],"max_tokens":6,"n":3,"seed":5,"ignore_eos":true,"stream":{{(stream ? "true" : "false")}},"stream_options":{{(stream ? """{"include_usage":true}""" : "null")}}}""";
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", body));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        string raw = await response.Content.ReadAsStringAsync();
        var texts = new Dictionary<int, string>();
        JsonElement usage;
        if (stream)
        {
            JsonElement[] events = [.. raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).TakeWhile(d => d != "[DONE]").Select(d => JsonDocument.Parse(d).RootElement.Clone())];
            foreach (JsonElement choice in events.SelectMany(e => e.GetProperty("choices").EnumerateArray()))
                if (choice.GetProperty("delta").TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
                    texts[choice.GetProperty("index").GetInt32()] = texts.GetValueOrDefault(choice.GetProperty("index").GetInt32()) + content.GetString();
            Assert.That(events.SelectMany(e => e.GetProperty("choices").EnumerateArray()).Count(c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.String), Is.EqualTo(3));
            usage = events[^1].GetProperty("usage");
        }
        else
        {
            JsonElement root = JsonDocument.Parse(raw).RootElement;
            foreach (JsonElement choice in root.GetProperty("choices").EnumerateArray())
                texts[choice.GetProperty("index").GetInt32()] = choice.GetProperty("message").GetProperty("content").GetString()!;
            usage = root.GetProperty("usage");
        }
        Assert.That(texts.Keys.Order(), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(texts.Values.Distinct().Count(), Is.GreaterThan(1), "each choice draws its own tokens");
        Assert.That(usage.GetProperty("completion_tokens").GetInt32(), Is.EqualTo(18));
    }

    [Test]
    public async Task UnderAuto_AToolSchemaTheGrammarCannotEnforce_StillServes()
    {
        // Under auto (and non-strict, as OpenAI's tools default) a "format" keyword does not fail the request: the
        // model sees the schema, and a call it makes carries a well-formed JSON object.
        string body = """{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"d":{"type":"string","format":"date"}}}}}]}""";
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", body));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task CompletionsHonourResponseFormat()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/completions",
            """{"model":"tiny","prompt":"JSON:","max_tokens":200,"seed":3,"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}}}}"""));
        string raw = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), raw);
        JsonElement choice = JsonDocument.Parse(raw).RootElement.GetProperty("choices")[0];
        Assert.That(choice.GetProperty("finish_reason").GetString(), Is.EqualTo("stop"));
        Assert.That(JsonDocument.Parse(choice.GetProperty("text").GetString()!).RootElement.GetProperty("n").ValueKind, Is.EqualTo(JsonValueKind.Number));
    }

    [TestCase(""", "tools": {}""", "tools")]
    [TestCase(""", "tools": [{"type": "retrieval"}]""", "tools[0].type")]
    [TestCase(""", "tools": [{"type": "function", "function": {"description": "x"}}]""", "tools[0].function.name")]
    [TestCase(""", "tools": [{"type": "function", "function": {"name": "f", "parameters": 5}}]""", "tools[0].function.parameters")]
    [TestCase(""", "tools": [{"type": "function", "function": {"name": "bad name!"}}]""", "tools")]
    [TestCase(""", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}}}], "tool_choice": "required" """, "tools")]
    [TestCase(""", "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}""", "tool_choice")]
    [TestCase(""", "tool_choice": "required" """, "tool_choice")]
    [TestCase(""", "tool_choice": "sometimes" """, "tool_choice")]
    [TestCase(""", "response_format": {"type": "xml"}""", "response_format.type")]
    [TestCase(""", "response_format": {"type": "json_schema"}""", "response_format.json_schema")]
    [TestCase(""", "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}""", "response_format.json_schema.name")]
    [TestCase(""", "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "a+"}}}""", "response_format.json_schema.schema")]
    [TestCase(""", "response_format": {"type": "json_object"}, "ignore_eos": true""", "ignore_eos")]
    [TestCase(""", "logit_bias": {"abc": 1}""", "logit_bias")]
    [TestCase(""", "logit_bias": {"5": 101}""", "logit_bias")]
    [TestCase(""", "logit_bias": {"99999999": 1}""", "logit_bias")]
    [TestCase(""", "top_logprobs": 3""", "top_logprobs")]
    [TestCase(""", "logprobs": true, "top_logprobs": 21""", "top_logprobs")]
    [TestCase(""", "presence_penalty": 3""", "presence_penalty")]
    [TestCase(""", "repetition_penalty": 0""", "repetition_penalty")]
    [TestCase(""", "chat_template_kwargs": {"thinking": true}""", "chat_template_kwargs")]
    [TestCase(""", "functions": [{"name": "f"}]""", "functions")]
    [TestCase(""", "regex": "a+" """, "regex")]
    [TestCase(""", "min_tokens": 5""", "min_tokens")]
    [TestCase(""", "modalities": ["text", "audio"]""", "modalities")]
    [TestCase(""", "guided_json": {"type": "object"}""", "guided_json")]
    public async Task MalformedToolsFormatsAndSamplingFields_Are400_NamingTheField(string extra, string field)
    {
        string body = $$"""{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":3{{extra}}}""";
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", body));
        string text = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        Assert.That(JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString(), Is.EqualTo(field), text);

        // The next valid request is answered.
        using HttpResponseMessage ok = await _http.SendAsync(Post("/v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"""));
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    private static HttpRequestMessage Post(string path, string json)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return request;
    }
}
