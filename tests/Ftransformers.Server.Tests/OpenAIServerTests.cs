using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Ftransformers.Generation;
using Ftransformers.Tokenization;
using NUnit.Framework;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using EngineChatMessage = Ftransformers.Tokenization.ChatMessage;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Server;

/// <summary>
/// The OpenAI-compatible server on a real Kestrel socket, driven by the official OpenAI .NET client and by raw HTTP.
/// Every refusal is followed by a valid request that must still be answered correctly.
/// </summary>
[TestFixture]
public class OpenAIServerTests
{
    private const string Key = "sk-test-key";
    private TestServer _server = null!;
    private HttpClient _http = null!;
    private OpenAIClient _openai = null!;
    private string _expectedGreedy = "";

    private static readonly EngineChatMessage[] Conversation = [EngineChatMessage.System("Be brief."), EngineChatMessage.User("Hello there")];

    [OneTimeSetUp]
    public async Task Start()
    {
        _server = await TestServer.StartAsync(apiKey: Key);
        _http = new HttpClient { BaseAddress = _server.Address, Timeout = TimeSpan.FromSeconds(60) };
        _openai = new OpenAIClient(new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "v1") });

        // What the engine itself generates for the conversation, greedily: the server must answer exactly this.
        using InferenceSession reference = InferenceSession.Load("synthetic:tiny");
        var request = GenerationRequest.FromMessages(Conversation, maxTokens: 5) with { Sampling = SamplingOptions.Greedy };
        await foreach (GenerationChunk chunk in reference.GenerateAsync(request))
            _expectedGreedy += chunk.Text;
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    [TearDown]
    public void ResetScript()
    {
        _server.Session.Script = null;
        _server.Session.CachedPromptTokens = 0;
    }

    private ChatClient Chat => _openai.GetChatClient(TestServer.Model);

    private static IEnumerable<OpenAI.Chat.ChatMessage> ClientConversation() =>
        [new SystemChatMessage("Be brief."), new UserChatMessage("Hello there")];

    private static ChatCompletionOptions Greedy(int maxTokens = 5) => new() { MaxOutputTokenCount = maxTokens, Temperature = 0 };

    private async Task AssertServerStillAnswers()
    {
        ChatCompletion completion = (await Chat.CompleteChatAsync(ClientConversation(), Greedy())).Value;
        Assert.That(completion.Content[0].Text, Is.EqualTo(_expectedGreedy), "the next valid request after the failure");
    }

    private HttpRequestMessage Post(string path, string json, string? key = Key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (key != null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    private static string ChatBody(string extra = "", string model = TestServer.Model, string content = "Hello there") =>
        $$"""{"model": "{{model}}", "messages": [{"role": "user", "content": {{JsonSerializer.Serialize(content)}}}], "max_tokens": 3{{extra}}}""";

    private static async Task<JsonElement> ErrorOf(HttpResponseMessage response)
    {
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
        using JsonDocument document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return document.RootElement.GetProperty("error").Clone();
    }

    [Test]
    public async Task Chat_WithTheOfficialClient_ReturnsTheEnginesGreedyTextAndUsage()
    {
        ChatCompletion completion = (await Chat.CompleteChatAsync(ClientConversation(), Greedy())).Value;

        Assert.That(completion.Content[0].Text, Is.EqualTo(_expectedGreedy));
        Assert.That(completion.FinishReason, Is.EqualTo(ChatFinishReason.Length));
        Assert.That(completion.Role, Is.EqualTo(ChatMessageRole.Assistant));
        Assert.That(completion.Model, Is.EqualTo(TestServer.Model));
        Assert.That(completion.Id, Does.StartWith("chatcmpl-"));
        Assert.That(completion.Usage.OutputTokenCount, Is.EqualTo(5));
        Assert.That(completion.Usage.InputTokenCount, Is.EqualTo(1 + "Be brief.".Length + 1 + "Hello there".Length + 1));
        Assert.That(completion.Usage.TotalTokenCount, Is.EqualTo(completion.Usage.InputTokenCount + 5));
        // The server is shared across tests, so how much of this prompt is cached depends on what ran before; the same
        // conversation again must find its prompt cached (all but the last token, which is computed for the logits).
        Assert.That(completion.Usage.InputTokenDetails.CachedTokenCount, Is.InRange(0, completion.Usage.InputTokenCount - 1));
        ChatCompletion again = (await Chat.CompleteChatAsync(ClientConversation(), Greedy())).Value;
        Assert.That(again.Content[0].Text, Is.EqualTo(_expectedGreedy));
        Assert.That(again.Usage.InputTokenDetails.CachedTokenCount, Is.EqualTo(again.Usage.InputTokenCount - 1));
    }

    [Test]
    public async Task ChatStreaming_WithTheOfficialClient_StreamsTheSameTextThenUsage()
    {
        var text = new StringBuilder();
        var updates = new List<StreamingChatCompletionUpdate>();
        await foreach (StreamingChatCompletionUpdate update in Chat.CompleteChatStreamingAsync(ClientConversation(), Greedy()))
        {
            updates.Add(update);
            foreach (ChatMessageContentPart part in update.ContentUpdate)
                text.Append(part.Text);
        }

        Assert.That(text.ToString(), Is.EqualTo(_expectedGreedy));
        Assert.That(updates.Count(u => u.FinishReason != null), Is.EqualTo(1));
        Assert.That(updates.Single(u => u.FinishReason != null).FinishReason, Is.EqualTo(ChatFinishReason.Length));
        StreamingChatCompletionUpdate last = updates[^1];
        Assert.That(last.Usage, Is.Not.Null, "the official client asks for stream_options.include_usage");
        Assert.That(last.Usage.OutputTokenCount, Is.EqualTo(5));
        Assert.That(last.Usage.InputTokenCount, Is.EqualTo(1 + "Be brief.".Length + 1 + "Hello there".Length + 1));
        Assert.That(updates.Select(u => u.CompletionId).Distinct().Count(), Is.EqualTo(1));
    }

    [Test]
    public async Task ChatStreaming_RawEvents_FollowOpenAIsShape()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(""", "stream": true, "stream_options": {"include_usage": true}""")));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/event-stream"));
        string[] events = [.. (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)];

        Assert.That(events, Has.All.StartWith("data: "));
        Assert.That(events[^1], Is.EqualTo("data: [DONE]"));
        JsonElement[] chunks = [.. events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement)];
        Assert.That(chunks, Has.All.Matches<JsonElement>(c => c.GetProperty("object").GetString() == "chat.completion.chunk"));
        Assert.That(chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString(), Is.EqualTo("assistant"));
        JsonElement usageChunk = chunks[^1];
        Assert.That(usageChunk.GetProperty("choices").GetArrayLength(), Is.Zero);
        Assert.That(usageChunk.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), Is.EqualTo(3));
        JsonElement usage = usageChunk.GetProperty("usage");
        Assert.That(usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32(), Is.InRange(0, usage.GetProperty("prompt_tokens").GetInt32() - 1));
        Assert.That(chunks[^2].GetProperty("choices")[0].GetProperty("finish_reason").GetString(), Is.EqualTo("length"));
        Assert.That(chunks[..^2].All(c => c.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind == JsonValueKind.Null), Is.True);
    }

    [Test]
    public async Task CompletionsStreaming_ContinuousUsage_CountsEveryTokenSoFar()
    {
        // Random weights over the byte tokenizer: tokens that end mid-character send no event, so an event may carry several.
        string json = $$$"""{"model": "{{{TestServer.Model}}}", "prompt": [0, 88, 89, 90], "max_tokens": 12, "temperature": 1, "seed": 5, "stream": true, "stream_options": {"include_usage": true, "continuous_usage_stats": true}}""";
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/completions", json));
        string[] events = [.. (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)];
        JsonElement[] chunks = [.. events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement)];
        int[] counts = [.. chunks.Select(c => c.GetProperty("usage").GetProperty("completion_tokens").GetInt32())];
        Assert.That(chunks.Select(c => c.GetProperty("usage").GetProperty("prompt_tokens").GetInt32()), Has.All.EqualTo(4));
        Assert.That(counts, Is.Ordered.Ascending);
        Assert.That(counts[^1], Is.EqualTo(12));
        Assert.That(counts[..^1].Zip(counts.Skip(1).SkipLast(1)), Has.All.Matches<(int A, int B)>(p => p.B > p.A), "each text event brings at least one token");

        using HttpResponseMessage refused = await _http.SendAsync(Post("/v1/completions", json.Replace("\"include_usage\": true, ", "")));
        Assert.That(refused.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await ErrorOf(refused)).GetProperty("param").GetString(), Is.EqualTo("stream_options.continuous_usage_stats"));
    }

    [Test]
    public async Task Completions_WithTheOfficialClient_ReturnTextAndUsage()
    {
        // OpenAI .NET 2.15 keeps its legacy completions client internal: send through the official client's pipeline
        // (its authentication, headers and error handling), as its protocol methods would.
        System.ClientModel.Primitives.ClientPipeline pipeline = Chat.Pipeline;
        using System.ClientModel.Primitives.PipelineMessage message = pipeline.CreateMessage();
        message.Request.Method = "POST";
        message.Request.Uri = new Uri(_server.Address, "v1/completions");
        message.Request.Headers.Set("Content-Type", "application/json");
        message.Request.Content = BinaryContent.Create(BinaryData.FromString($$"""{"model": "{{TestServer.Model}}", "prompt": "Once upon", "max_tokens": 4, "temperature": 0}"""));
        await pipeline.SendAsync(message);
        Assert.That(message.Response!.Status, Is.EqualTo(200));
        using JsonDocument json = JsonDocument.Parse(message.Response.Content.ToString());
        JsonElement root = json.RootElement;

        Assert.That(root.GetProperty("object").GetString(), Is.EqualTo("text_completion"));
        Assert.That(root.GetProperty("choices")[0].GetProperty("finish_reason").GetString(), Is.EqualTo("length"));
        Assert.That(root.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), Is.EqualTo(4));
        Assert.That(root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(1 + "Once upon".Length));

        using InferenceSession reference = InferenceSession.Load("synthetic:tiny");
        string expected = "";
        await foreach (GenerationChunk chunk in reference.GenerateAsync(GenerationRequest.FromPrompt("Once upon", 4) with { Sampling = SamplingOptions.Greedy }))
            expected += chunk.Text;
        Assert.That(root.GetProperty("choices")[0].GetProperty("text").GetString(), Is.EqualTo(expected));
    }

    [Test]
    public async Task CompletionsStreaming_WithTokenIdPrompt_StreamsTextThenUsageThenDone()
    {
        string json = $$$"""{"model": "{{{TestServer.Model}}}", "prompt": [0, 88, 89, 90], "max_tokens": 4, "stream": true, "stream_options": {"include_usage": true}}""";
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/completions", json));
        string[] events = [.. (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)];

        Assert.That(events[^1], Is.EqualTo("data: [DONE]"));
        JsonElement usage = JsonDocument.Parse(events[^2]["data: ".Length..]).RootElement.GetProperty("usage");
        Assert.That(usage.GetProperty("prompt_tokens").GetInt32(), Is.EqualTo(4));
        Assert.That(usage.GetProperty("completion_tokens").GetInt32(), Is.EqualTo(4));
    }

    [Test]
    public async Task Models_WithTheOfficialClient_ListTheServedModel()
    {
        OpenAIModelClient models = _openai.GetOpenAIModelClient();
        OpenAIModelCollection list = (await models.GetModelsAsync()).Value;
        Assert.That(list.Select(m => m.Id), Is.EqualTo(new[] { TestServer.Model }));
        Assert.That(list[0].OwnedBy, Is.EqualTo("ftransformers"));
        Assert.That((await models.GetModelAsync(TestServer.Model)).Value.Id, Is.EqualTo(TestServer.Model));
    }

    [Test]
    public async Task ReasoningContent_IsSeparatedFromTheAnswer()
    {
        _server.Session.Script = ["<think>", "check ", "twice</think>", "\n\nYes."];
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody()));
        JsonElement message = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("message");
        Assert.That(message.GetProperty("reasoning_content").GetString(), Is.EqualTo("check twice"));
        Assert.That(message.GetProperty("content").GetString(), Is.EqualTo("Yes."));

        using HttpResponseMessage streamed = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(""", "stream": true""")));
        string reasoning = "", content = "";
        foreach (string e in (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).SkipLast(1))
        {
            JsonElement delta = JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("delta");
            reasoning += delta.TryGetProperty("reasoning_content", out JsonElement r) ? r.GetString() : "";
            content += delta.TryGetProperty("content", out JsonElement c) ? c.GetString() : "";
        }
        Assert.That((reasoning, content), Is.EqualTo(("check twice", "Yes.")));
    }

    [Test]
    public async Task CachedPromptTokens_ReachTheOfficialClient()
    {
        _server.Session.Script = ["ok"];
        _server.Session.CachedPromptTokens = 8;
        ChatCompletion completion = (await Chat.CompleteChatAsync(ClientConversation(), Greedy())).Value;
        Assert.That(completion.Usage.InputTokenDetails.CachedTokenCount, Is.EqualTo(8));
        Assert.That(completion.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
    }

    [Test]
    public async Task SamplingFields_ReachTheSession()
    {
        await _http.SendAsync(Post("/v1/chat/completions", ChatBody(""", "temperature": 0.5, "top_p": 0.8, "top_k": 20, "seed": 7, "stop": ["x", "y"], "ignore_eos": true""")));
        GenerationRequest request = _server.Session.LastRequest!;
        Assert.That(request.Sampling, Is.EqualTo(new SamplingOptions { Temperature = 0.5f, TopP = 0.8f, TopK = 20, Seed = 7 }));
        Assert.That(request.Stop, Is.EqualTo(new[] { "x", "y" }));
        Assert.That(request.MaxTokens, Is.EqualTo(3));
        Assert.That(request.IgnoreEos, Is.True);
    }

    [Test]
    public async Task MalformedJson_Is400_ThenTheServerStillAnswers()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", """{"model": "tiny", "messages": [}"""));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        JsonElement error = await ErrorOf(response);
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("invalid_request_error"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("invalid_json"));
        await AssertServerStillAnswers();
    }

    [TestCase(""", "temperature": 3""", "temperature")]
    [TestCase(""", "top_p": 0""", "top_p")]
    [TestCase(""", "max_tokens": 100000""", "max_tokens")]
    [TestCase(""", "n": 17""", "n")]
    [TestCase(""", "stop": 5""", "stop")]
    [TestCase(""", "stream": "yes" """, "stream")]
    public async Task FieldOutOfRange_Is400_NamingTheField(string extra, string field)
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(extra)));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await ErrorOf(response)).GetProperty("param").GetString(), Is.EqualTo(field));
        await AssertServerStillAnswers();
    }

    // Valid JSON escapes that decode to a lone UTF-16 surrogate, which no .NET string accepts.
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "a\ud800b"}], "max_tokens": 3}""", "messages[0].content")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00"}]}]}""", "messages[0].content[0].text")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "\ud800", "content": "a"}]}""", "messages[0].role")]
    [TestCase("/v1/chat/completions", """{"model": "tiny\udbff", "messages": [{"role": "user", "content": "a"}]}""", "model")]
    [TestCase("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "a"}], "stop": ["\ud800"]}""", "stop")]
    [TestCase("/v1/completions", """{"model": "tiny", "prompt": "\ud800", "max_tokens": 3}""", "prompt")]
    public async Task LoneSurrogateInAString_Is400_NamingTheField(string path, string body, string field)
    {
        using HttpResponseMessage response = await _http.SendAsync(Post(path, body));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        JsonElement error = await ErrorOf(response);
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo(field));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("surrogate"));
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task ThreeHundredMutatedRequests_NeverGetA5xx_AndTheServerStillAnswers()
    {
        string[] valid =
        [
            ChatBody(""", "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "stream": true, "stream_options": {"include_usage": true}"""),
            """{"model": "tiny", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_completion_tokens": 2, "seed": 3}""",
            """{"model": "tiny", "prompt": "Once upon", "max_tokens": 2, "top_k": 5}""",
            """{"model": "tiny", "prompt": [[5, 6, 7]], "max_tokens": 2, "stream": true}""",
        ];
        string[] oddValues = ["null", "true", "-1", "0", "1e309", "-1e308", "99999999999999999999", "3.5", "\"\"", "\"\\ud800\"", "\"\\u0000\"",
            "\"\u202e\ud83e\udd8a\"", "[]", "{}", "[[[[[[]]]]]]", "[1, \"a\", null]", "{\"type\": 7}"];
        var random = new Random(12);
        var statuses = new Dictionary<int, int>();
        for (int i = 0; i < 300; i++)
        {
            string body = valid[random.Next(valid.Length)];
            string path = body.Contains("\"prompt\"", StringComparison.Ordinal) ? "/v1/completions" : "/v1/chat/completions";
            string mutated = random.Next(4) switch
            {
                0 => body[..random.Next(body.Length)],                                             // truncated
                1 => ReplaceAValue(body, oddValues[random.Next(oddValues.Length)], random),        // a wrong type or an odd value
                2 => body.Insert(random.Next(body.Length), oddValues[random.Next(oddValues.Length)]), // stray text anywhere
                _ => ReplaceAValue(ReplaceAValue(body, oddValues[random.Next(oddValues.Length)], random), oddValues[random.Next(oddValues.Length)], random),
            };
            using HttpResponseMessage response = await _http.SendAsync(Post(path, mutated));
            int status = (int)response.StatusCode;
            statuses[status] = statuses.GetValueOrDefault(status) + 1;
            Assert.That(status, Is.LessThan(500), $"request {i} to {path}: {mutated}\n{await response.Content.ReadAsStringAsync()}");
            if (status >= 400)
                Assert.That((await ErrorOf(response)).GetProperty("message").GetString(), Is.Not.Empty, $"request {i}: {mutated}");
            else
                await response.Content.ReadAsStringAsync(); // a stream is read to its end
        }
        TestContext.Out.WriteLine(string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}")));
        Assert.That(statuses.GetValueOrDefault(400), Is.GreaterThan(150), "most mutations are refused");
        await AssertServerStillAnswers();
    }

    // Replaces the value after a random ':' of the body (up to the next ',' or '}') with another.
    private static string ReplaceAValue(string body, string value, Random random)
    {
        int[] colons = [.. Enumerable.Range(0, body.Length).Where(i => body[i] == ':')];
        int start = colons[random.Next(colons.Length)] + 1;
        int end = body.IndexOfAny([',', '}'], start);
        return body[..start] + " " + value + (end < 0 ? "" : body[end..]);
    }

    [Test]
    public async Task MessageWithoutRole_Is400_NamingTheMessage()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", """{"model": "tiny", "messages": [{"role": "user", "content": "a"}, {"content": "b"}]}"""));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That((await ErrorOf(response)).GetProperty("param").GetString(), Is.EqualTo("messages[1].role"));
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task UnknownModel_Is404ModelNotFound_ThenTheServerStillAnswers()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(model: "gpt-4o")));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        JsonElement error = await ErrorOf(response);
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("model_not_found"));
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("model"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("gpt-4o"));
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task PromptLongerThanTheContext_Is400_NamingMessages()
    {
        // The byte tokenizer makes one token per character; synthetic:tiny's context is 4096 tokens.
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(content: new string('a', 5000))));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        JsonElement error = await ErrorOf(response);
        Assert.That(error.GetProperty("param").GetString(), Is.EqualTo("messages"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("4096"));
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task BodyOverTheLimit_Is400_ThenTheServerStillAnswers()
    {
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(content: new string('a', 100 * 1024))));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        JsonElement error = await ErrorOf(response);
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("request_too_large"));
        Assert.That(error.GetProperty("message").GetString(), Does.Contain("65536"));
        await AssertServerStillAnswers();
    }

    [TestCase(null, "Missing API key")]
    [TestCase("sk-wrong", "Incorrect API key")]
    public async Task MissingOrWrongApiKey_Is401OnEveryEndpointButHealth(string? key, string message)
    {
        int requests = _server.Session.Requests;
        using HttpResponseMessage chat = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(), key));
        Assert.That(chat.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        JsonElement error = await ErrorOf(chat);
        Assert.That(error.GetProperty("message").GetString(), Does.StartWith(message));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("invalid_api_key"));

        foreach (string path in (string[])["/v1/models", "/metrics", "/v1/models/tiny"])
        {
            using var get = new HttpRequestMessage(HttpMethod.Get, path);
            if (key != null)
                get.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using HttpResponseMessage response = await _http.SendAsync(get);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), path);
        }
        using HttpResponseMessage completions = await _http.SendAsync(Post("/v1/completions", """{"model": "tiny", "prompt": "a"}""", key));
        Assert.That(completions.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(_server.Session.Requests, Is.EqualTo(requests), "nothing reached the session");

        using HttpResponseMessage health = await _http.GetAsync("/health");
        Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString(), Is.EqualTo("ok"));
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task FullQueue_Is503WithRetryAfter_ThenTheServerStillAnswers()
    {
        _server.Session.RefuseNext();
        using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(""", "stream": true""")));

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That(response.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(1)));
        JsonElement error = await ErrorOf(response);
        Assert.That(error.GetProperty("type").GetString(), Is.EqualTo("server_error"));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("queue_full"));
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task ClientDisconnect_CancelsTheRequest_ThenTheServerStillAnswers()
    {
        _server.Session.NextIsEndless();
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            using HttpResponseMessage response = await _http.SendAsync(Post("/v1/chat/completions", ChatBody(""", "stream": true""")), HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            // Read until a content event arrives, then hang up.
            for (int i = 0; i < 10; i++)
                if ((await reader.ReadLineAsync(cts.Token))?.Contains("\"content\":\"x\"") == true)
                    break;
            await _server.Session.EndlessStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }

        await _server.Session.EndlessStopped.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(_server.Session.GetStatistics().RunningRequests, Is.Zero);
        await AssertServerStillAnswers();
    }

    [Test]
    public async Task Metrics_ArePrometheusText_WithLatenciesTokensAndLoad()
    {
        await AssertServerStillAnswers();
        _server.Session.RefuseNext();
        (await _http.SendAsync(Post("/v1/chat/completions", ChatBody()))).Dispose();

        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        using HttpResponseMessage response = await _http.SendAsync(request);
        Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/plain"));
        string text = await response.Content.ReadAsStringAsync();

        Assert.That(text, Does.Contain("# TYPE ftransformers_time_to_first_token_seconds histogram"));
        Assert.That(text, Does.Contain("ftransformers_time_to_first_token_seconds_bucket{le=\"+Inf\"}"));
        Assert.That(text, Does.Contain("# TYPE ftransformers_inter_token_latency_seconds histogram"));
        Assert.That(text, Does.Contain("# TYPE ftransformers_tokens_generated_total counter"));
        Assert.That(text, Does.Contain("# TYPE ftransformers_tokens_prompt_cached_total counter"));
        Assert.That(text, Does.Contain("ftransformers_requests_total{outcome=\"queue_full\"}"));
        Assert.That(text, Does.Contain("ftransformers_requests_running 0"));
        Assert.That(text, Does.Contain("ftransformers_requests_waiting 0"));
        Assert.That(text, Does.Contain("ftransformers_kv_cache_tokens_used 0"));
        double generated = double.Parse(text.Split('\n').Single(l => l.StartsWith("ftransformers_tokens_generated_total ", StringComparison.Ordinal)).Split(' ')[1],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(generated, Is.GreaterThanOrEqualTo(5));
    }
}
