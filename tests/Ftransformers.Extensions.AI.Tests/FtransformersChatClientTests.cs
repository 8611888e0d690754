using Ftransformers.Extensions.AI;
using Ftransformers.Generation;
using Ftransformers.Hosting;
using System.Text.Json;
using Ftransformers.Tests.Shared;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Extensions.AI;

[TestFixture]
public class FtransformersChatClientTests
{
    private InferenceSession _tiny = null!;

    [OneTimeSetUp]
    public void Load() => _tiny = InferenceSession.Load("synthetic:tiny");

    [OneTimeTearDown]
    public void Unload() => _tiny.Dispose();

    private static readonly AIChatMessage[] Conversation = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hello there")];

    [Test]
    public async Task GetResponse_OnTheSyntheticModel_ReportsUsageAndLengthFinish()
    {
        IChatClient client = _tiny.AsIChatClient("tiny");
        ChatResponse response = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 5, Temperature = 0 });

        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Length));
        Assert.That(response.Usage!.OutputTokenCount, Is.EqualTo(5));
        // BOS, the system prompt, <｜User｜>, the user's bytes and <｜Assistant｜>: one token each with the byte tokenizer.
        Assert.That(response.Usage.InputTokenCount, Is.EqualTo(1 + "Be brief.".Length + 1 + "Hello there".Length + 1));
        Assert.That(response.Usage.TotalTokenCount, Is.EqualTo(response.Usage.InputTokenCount + 5));
        Assert.That(response.Usage.CachedInputTokenCount, Is.Zero);
        Assert.That(response.ModelId, Is.EqualTo("tiny"));
        Assert.That(response.Messages, Has.Count.EqualTo(1));
        Assert.That(response.Messages[0].Role, Is.EqualTo(ChatRole.Assistant));
    }

    [Test]
    public async Task Streaming_GreedyText_MatchesTheNonStreamingResponse()
    {
        IChatClient client = _tiny.AsIChatClient();
        var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 0 };
        ChatResponse whole = await client.GetResponseAsync(Conversation, options);

        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation, options))
            updates.Add(update);

        Assert.That(string.Concat(updates.Select(u => u.Text)), Is.EqualTo(whole.Text));
        Assert.That(updates[^1].FinishReason, Is.EqualTo(ChatFinishReason.Length));
        Assert.That(updates[^1].Contents.OfType<UsageContent>().Single().Details.OutputTokenCount, Is.EqualTo(12));
        Assert.That(updates.Take(updates.Count - 1).All(u => u.FinishReason == null), Is.True);
        Assert.That(updates.Select(u => u.ResponseId).Distinct().Count(), Is.EqualTo(1));
    }

    [Test]
    public void ToRequest_MapsEveryChatOption()
    {
        var options = new ChatOptions
        {
            MaxOutputTokens = 77, Temperature = 0.6f, TopP = 0.9f, TopK = 40, Seed = 1234, StopSequences = ["\n\n", "END"],
            Instructions = "Answer in French.",
        };
        GenerationRequest request = FtransformersChatClient.ToRequest(Conversation, options, contextLength: 4096);

        Assert.That(request.MaxTokens, Is.EqualTo(77));
        Assert.That(request.Sampling.Temperature, Is.EqualTo(0.6f));
        Assert.That(request.Sampling.TopP, Is.EqualTo(0.9f));
        Assert.That(request.Sampling.TopK, Is.EqualTo(40));
        Assert.That(request.Sampling.Seed, Is.EqualTo(1234));
        Assert.That(request.Stop, Is.EqualTo(new[] { "\n\n", "END" }));
        Assert.That(request.Messages!.Select(m => (m.Role, m.Content)), Is.EqualTo(new[]
        {
            ("system", "Answer in French."), ("system", "Be brief."), ("user", "Hello there"),
        }));
    }

    [Test]
    public void ToRequest_WithoutMaxOutputTokens_AllowsTheWholeContext()
    {
        GenerationRequest request = FtransformersChatClient.ToRequest(Conversation, null, contextLength: 4096);
        Assert.That(request.MaxTokens, Is.EqualTo(4096));
        Assert.That(request.Sampling.Temperature, Is.EqualTo(1f));
        Assert.That(request.Sampling.Seed, Is.Null);
    }

    [Test]
    public void ToRequest_OutOfRangeOption_NamesIt()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => FtransformersChatClient.ToRequest(Conversation, new ChatOptions { TopP = 1.5f }, 4096));
        Assert.That(e!.Message, Does.Contain("top_p"));
    }

    [Test]
    public void ToRequest_ToolCallsAndResults_BecomeDeepSeekToolTurns()
    {
        AIChatMessage[] messages =
        [
            new(ChatRole.User, "Weather in Paris?"),
            new(ChatRole.Assistant, [new FunctionCallContent("call1", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris" })]),
            new(ChatRole.Tool, [new FunctionResultContent("call1", "18C, sunny")]),
        ];
        GenerationRequest request = FtransformersChatClient.ToRequest(messages, null, 4096);

        Assert.That(request.Messages![1].ToolCalls![0], Is.EqualTo(new Ftransformers.Tokenization.ToolCall("get_weather", "{\"city\":\"Paris\"}")));
        Assert.That(request.Messages[1].Content, Is.Null);
        Assert.That((request.Messages[2].Role, request.Messages[2].Content), Is.EqualTo(("tool", "18C, sunny")));
    }

    [Test]
    public void ToolsToolModeFormatAndPenalties_MapOntoTheRequest()
    {
        AIFunction one = AIFunctionFactory.Create((int days) => days, "forecast", "The forecast.");
        var options = new ChatOptions
        {
            Tools = [one], ToolMode = ChatToolMode.RequireSpecific("forecast"), AllowMultipleToolCalls = false,
            ResponseFormat = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse("""{"type":"object"}""").RootElement, "answer"),
            PresencePenalty = 0.5f, FrequencyPenalty = 0.25f,
        };
        GenerationRequest request = FtransformersChatClient.ToRequest(Conversation, options, 4096);
        Assert.That(request.Tools!.Single().Name, Is.EqualTo("forecast"));
        Assert.That(request.Tools!.Single().Description, Is.EqualTo("The forecast."));
        Assert.That(request.Tools!.Single().Parameters!.Value.GetProperty("properties").GetProperty("days").GetProperty("type").GetString(), Is.EqualTo("integer"));
        Assert.That(request.ToolChoice, Is.EqualTo(ToolChoice.Function("forecast")));
        Assert.That(request.ParallelToolCalls, Is.False);
        Assert.That(request.ResponseFormat.Kind, Is.EqualTo(ResponseFormatKind.JsonSchema));
        Assert.That(request.ResponseFormat.Name, Is.EqualTo("answer"));
        Assert.That((request.Sampling.PresencePenalty, request.Sampling.FrequencyPenalty), Is.EqualTo((0.5f, 0.25f)));

        Assert.That(FtransformersChatClient.ToRequest(Conversation, new ChatOptions { Tools = [one], ToolMode = ChatToolMode.RequireAny }, 4096).ToolChoice, Is.EqualTo(ToolChoice.Required));
        Assert.That(FtransformersChatClient.ToRequest(Conversation, new ChatOptions { Tools = [one], ToolMode = ChatToolMode.None }, 4096).ToolChoice, Is.EqualTo(ToolChoice.None));
        Assert.That(FtransformersChatClient.ToRequest(Conversation, new ChatOptions { ResponseFormat = ChatResponseFormat.Json }, 4096).ResponseFormat, Is.EqualTo(ResponseFormat.JsonObject));
    }

    [Test]
    public void HostedToolsAndConversationIds_AreRefusedRatherThanIgnored()
    {
        Assert.Throws<NotSupportedException>(() => FtransformersChatClient.ToRequest(Conversation, new ChatOptions { Tools = [new HostedWebSearchTool()] }, 4096));
        Assert.Throws<NotSupportedException>(() => FtransformersChatClient.ToRequest(Conversation, new ChatOptions { ConversationId = "c1" }, 4096));
    }

    [Test]
    public async Task UnderUseFunctionInvocation_ARequiredCallRunsTheFunctionAndTheAnswerFollows()
    {
        int calls = 0;
        AIFunction forecast = AIFunctionFactory.Create((int days) => { Interlocked.Increment(ref calls); return $"rain on {days % 4} days"; }, "forecast");
        using InferenceSession session = InferenceSession.Load("synthetic:tiny");
        IChatClient client = new FtransformersChatClient(session).AsBuilder().UseFunctionInvocation().Build();
        var options = new ChatOptions { Tools = [forecast], ToolMode = ChatToolMode.RequireAny, MaxOutputTokens = 120, Seed = 3 };
        ChatResponse response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Rain?")], options);

        Assert.That(calls, Is.GreaterThanOrEqualTo(1), string.Join(" | ", response.Messages.SelectMany(m => m.Contents).Select(c => c.ToString())) + " " + response.FinishReason);
        FunctionCallContent call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().First();
        Assert.That(call.Name, Is.EqualTo("forecast"));
        Assert.That(call.CallId, Does.StartWith("call_"));
        Assert.That(call.Arguments!["days"], Is.Not.Null);
        Assert.That(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().First().CallId, Is.EqualTo(call.CallId));
    }

    [Test]
    public async Task AJsonSchemaFormat_GivesValidJson()
    {
        var options = new ChatOptions
        {
            ResponseFormat = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse("""{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer"}},"required":["ok","n"],"additionalProperties":false}""").RootElement),
            MaxOutputTokens = 60, Seed = 5,
        };
        using InferenceSession session = InferenceSession.Load("synthetic:tiny");
        ChatResponse response = await new FtransformersChatClient(session).GetResponseAsync([new AIChatMessage(ChatRole.User, "JSON")], options);
        using JsonDocument json = JsonDocument.Parse(response.Text);
        Assert.That(json.RootElement.GetProperty("ok").ValueKind, Is.AnyOf(JsonValueKind.True, JsonValueKind.False));
        Assert.That(json.RootElement.GetProperty("n").ValueKind, Is.EqualTo(JsonValueKind.Number));
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
    }

    [Test]
    public async Task ThinkBlock_BecomesReasoningContent_SplitAcrossChunks()
    {
        var session = new ScriptedSession { Script = ["<th", "ink>\nweigh", " it</thi", "nk>\n\nThe ", "answer."] };
        IChatClient client = session.AsIChatClient();

        ChatResponse response = await client.GetResponseAsync(Conversation);
        Assert.That(response.Messages[0].Contents.OfType<TextReasoningContent>().Single().Text, Is.EqualTo("\nweigh it"));
        Assert.That(response.Text, Is.EqualTo("The answer."));

        var reasoning = "";
        var text = "";
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Conversation))
        {
            reasoning += string.Concat(update.Contents.OfType<TextReasoningContent>().Select(c => c.Text));
            text += update.Text;
        }
        Assert.That((reasoning, text), Is.EqualTo(("\nweigh it", "The answer.")));
    }

    [Test]
    public async Task CachedPromptTokensAndStopFinish_AreReported()
    {
        var session = new ScriptedSession { Script = ["a", "b"], PromptTokens = 30, CachedPromptTokens = 16, Finish = FinishReason.Stop };
        ChatResponse response = await session.AsIChatClient().GetResponseAsync(Conversation);

        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(response.Usage!.CachedInputTokenCount, Is.EqualTo(16));
        Assert.That(response.Usage.InputTokenCount, Is.EqualTo(30));
        Assert.That(response.Text, Is.EqualTo("ab"));
        Assert.That(response.Messages[0].Contents.OfType<TextReasoningContent>(), Is.Empty);
    }

    [Test]
    public async Task Cancellation_StopsTheStream()
    {
        var session = new ScriptedSession();
        session.NextIsEndless();
        using var cts = new CancellationTokenSource();
        int updates = 0;
        Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate _ in session.AsIChatClient().GetStreamingResponseAsync(Conversation, null, cts.Token))
                if (++updates == 3)
                    await cts.CancelAsync();
        });
        await session.EndlessStopped.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.That(updates, Is.EqualTo(3));
    }

    [Test]
    public void GetService_ReturnsMetadataAndTheSession()
    {
        IChatClient client = _tiny.AsIChatClient("tiny");
        Assert.That(client.GetService<ChatClientMetadata>()!.DefaultModelId, Is.EqualTo("tiny"));
        Assert.That(client.GetService<ChatClientMetadata>()!.ProviderName, Is.EqualTo("ftransformers"));
        Assert.That(client.GetService<IInferenceSession>(), Is.SameAs(_tiny));
        Assert.That(client.GetService<ChatClientMetadata>("key"), Is.Null);
    }

    [Test]
    public async Task DependencyInjection_RegistersAChatClientNamedAfterTheServedModel()
    {
        var services = new ServiceCollection();
        services.AddFtransformers(o => { o.ModelPath = "synthetic:tiny"; o.ServedModelName = "tiny-chat"; });
        services.AddFtransformersChatClient();
        await using ServiceProvider provider = services.BuildServiceProvider();

        IChatClient client = provider.GetRequiredService<IChatClient>();
        ChatResponse response = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 3 });
        Assert.That(response.ModelId, Is.EqualTo("tiny-chat"));
        Assert.That(response.Usage!.OutputTokenCount, Is.LessThanOrEqualTo(3));
        Assert.That(client.GetService<IInferenceSession>(), Is.InstanceOf<InstrumentedInferenceSession>());
    }
}
