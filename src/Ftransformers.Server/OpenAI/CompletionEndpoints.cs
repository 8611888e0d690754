using System.Net;
using System.Text;
using System.Text.Json;
using Ftransformers.Generation;
using Ftransformers.Generation.Grammar;
using Ftransformers.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Ftransformers.Server.OpenAI;

/// <summary>
/// <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c>: parse, generate on the session, answer in one
/// JSON body or as server-sent events. Errors before the first token get a status code; a client that goes away
/// cancels its request through <see cref="HttpContext.RequestAborted"/>.
/// </summary>
internal sealed class CompletionEndpoints(IInferenceSession session, IOptions<FtransformersOptions> engine, IOptions<FtransformersServerOptions> server, ILogger<CompletionEndpoints> logger)
{
    private readonly string _model = engine.Value.EffectiveModelName;

    public Task ChatAsync(HttpContext context) => HandleAsync(context, chat: true);

    public Task CompletionsAsync(HttpContext context) => HandleAsync(context, chat: false);

    private async Task HandleAsync(HttpContext context, bool chat)
    {
        CancellationToken aborted = context.RequestAborted;
        var choices = new List<Choice>();
        var id = new ResponseId(chat ? "chatcmpl-" : "cmpl-");
        // Ends the choices' generations when the response ends early (an error, a failed write), not only on abort.
        using var generation = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        try
        {
            ParsedRequest request;
            try
            {
                using JsonDocument body = await ReadBodyAsync(context, aborted);
                int contextLength = session.Config.MaxPositionEmbeddings;
                request = chat ? RequestParser.ParseChat(body.RootElement, contextLength) : RequestParser.ParseCompletion(body.RootElement, contextLength);
            }
            catch (ArgumentException e)
            {
                // Values the engine's own checks refuse (e.g. a stop list with a null) after parsing.
                throw ApiException.BadRequest(e.Message, null);
            }
            if (request.Model != _model)
                throw new ApiException(HttpStatusCode.NotFound, $"The model '{request.Model}' does not exist; this server serves '{_model}'.", "model", "model_not_found");

            // Choice 0's first chunk is awaited before anything is written, so refusals still get their status code;
            // by then its prompt is in the prefix cache, so the other choices reuse its KV instead of computing it again.
            for (int i = 0; i < request.Choices; i++)
                choices.Add(await StartAsync(context, request, i, chat, generation.Token));

            if (request.Stream)
                await StreamAsync(context, request, id, choices, chat, aborted);
            else
                await RespondAsync(context, id, choices, chat, aborted);
        }
        catch (ApiException e)
        {
            await WriteErrorAsync(context, e);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client went away; the session has stopped its request. Nothing to answer.
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "Request to {Path} failed", context.Request.Path);
            await WriteErrorAsync(context, new ApiException(HttpStatusCode.InternalServerError, "The server failed to complete the request.", null, null, ApiException.ServerError));
        }
        finally
        {
            await generation.CancelAsync();
            foreach (Choice choice in choices)
            {
                // A stream may not be disposed while a read of it is in flight.
                try
                {
                    await choice.Pump;
                }
                catch (Exception)
                {
                    // Cancelled or failed: already answered above.
                }
                await choice.Chunks.DisposeAsync();
            }
        }
    }

    private async Task<Choice> StartAsync(HttpContext context, ParsedRequest request, int index, bool chat, CancellationToken aborted)
    {
        GenerationRequest generation = request.Generation;
        // Seeded choices differ from each other and repeat across identical requests.
        if (index > 0 && generation.Sampling.Seed is int seed)
            generation = generation with { Sampling = generation.Sampling with { Seed = unchecked(seed + index) } };
        IAsyncEnumerator<GenerationChunk> chunks = session.GenerateAsync(generation, aborted).GetAsyncEnumerator(aborted);
        try
        {
            if (!await chunks.MoveNextAsync())
                throw new InvalidOperationException("The session ended the stream without a final chunk.");
            // Output held to JSON or to tool calls never opens with reasoning, whatever the reasoning parser.
            bool constrained = generation.ResponseFormat.Kind != ResponseFormatKind.Text || generation.ToolChoice?.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function;
            return new Choice(index, chunks, chat ? new ReasoningParser(startsInReasoning: server.Value.ReasoningParser == "deepseek-r1" && !constrained) : null);
        }
        catch (QueueFullException e)
        {
            await chunks.DisposeAsync();
            context.Response.Headers.RetryAfter = server.Value.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw new ApiException(HttpStatusCode.ServiceUnavailable, e.Message, null, "queue_full", ApiException.ServerError);
        }
        catch (ArgumentException e)
        {
            await chunks.DisposeAsync();
            // ArgumentException appends "(Parameter 'X')" to its message; the error's param says that better.
            string message = e.ParamName != null ? e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal) : e.Message;
            throw ApiException.BadRequest(message, ParamOf(e, request));
        }
    }

    // The session names the request property at fault; OpenAI names the body field.
    private static string? ParamOf(ArgumentException e, ParsedRequest request) => e switch
    {
        JsonSchemaException => request.Generation.ResponseFormat.Kind == ResponseFormatKind.JsonSchema ? "response_format.json_schema.schema" : "tools",
        { ParamName: "Tools" } => "tools",
        { ParamName: "ToolChoice" } => "tool_choice",
        { ParamName: "IgnoreEos" } => "ignore_eos",
        { ParamName: "TopLogprobs" } => "top_logprobs",
        { ParamName: "LogitBias" } => "logit_bias",
        _ => request.InputField,
    };

    private async Task<JsonDocument> ReadBodyAsync(HttpContext context, CancellationToken cancellationToken)
    {
        if (context.Request.ContentType is { } type && !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw ApiException.BadRequest($"Content-Type must be application/json (got '{type}').", null);
        try
        {
            return await JsonDocument.ParseAsync(context.Request.Body, default, cancellationToken);
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"The body is not valid JSON: {e.Message}", null, "invalid_json");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw ApiException.BadRequest($"The request body exceeds the limit of {server.Value.MaxRequestBodyBytes} bytes.", null, "request_too_large");
        }
    }

    private sealed class ResponseId(string prefix)
    {
        public string Id { get; } = prefix + Guid.NewGuid().ToString("N");
        public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    }

    /// <summary>One of the request's completions: its stream, and how its text splits into reasoning and answer.</summary>
    private sealed class Choice(int index, IAsyncEnumerator<GenerationChunk> chunks, ReasoningParser? reasoning)
    {
        public int Index { get; } = index;
        public IAsyncEnumerator<GenerationChunk> Chunks { get; } = chunks;
        public ReasoningParser? Reasoning { get; } = reasoning;
        public int TextOffset { get; set; }

        /// <summary>The task reading this choice's stream while choices are streamed together.</summary>
        public Task Pump { get; set; } = Task.CompletedTask;

        /// <summary>Splits a chunk's text into reasoning and answer (completions have no reasoning).</summary>
        public (string Reasoning, string Answer) Split(GenerationChunk chunk)
        {
            if (Reasoning == null)
                return ("", chunk.Text);
            (string thought, string answer) = Reasoning.Append(chunk.Text);
            if (chunk.FinishReason != null)
            {
                (string restThought, string restAnswer) = Reasoning.Flush();
                thought += restThought;
                answer += restAnswer;
            }
            return (thought, answer);
        }

        /// <summary>The chunk's completed calls, as a whole response writes them.</summary>
        public static IEnumerable<ToolCallWire> Calls(GenerationChunk chunk) =>
            chunk.ToolCalls.Select(c => new ToolCallWire(null, c.Id, "function", new FunctionCallWire(c.Name, c.Arguments)));

        /// <summary>The chunk's pieces of calls, as OpenAI streams them: id, type and name on a call's first piece.</summary>
        public static List<ToolCallWire>? Deltas(GenerationChunk chunk) => chunk.ToolCallDeltas.Count == 0 ? null
            : [.. chunk.ToolCallDeltas.Select(d => new ToolCallWire(d.Index, d.Id, d.Id != null ? "function" : null, new FunctionCallWire(d.Name, d.Arguments)))];
    }

    private async Task RespondAsync(HttpContext context, ResponseId id, List<Choice> choices, bool chat, CancellationToken aborted)
    {
        var chatChoices = new List<ChatChoice>();
        var textChoices = new List<TextChoice>();
        var usages = new List<GenerationChunk>();
        foreach (Choice choice in choices)
        {
            var reasoning = new StringBuilder();
            var answer = new StringBuilder();
            var calls = new List<ToolCallWire>();
            var logprobs = new List<TokenLogprob>();
            GenerationChunk chunk = choice.Chunks.Current;
            while (true)
            {
                (string thought, string text) = choice.Split(chunk);
                reasoning.Append(thought);
                answer.Append(text);
                calls.AddRange(Choice.Calls(chunk));
                logprobs.AddRange(chunk.Logprobs ?? []);
                if (chunk.FinishReason != null || !await choice.Chunks.MoveNextAsync())
                    break;
                chunk = choice.Chunks.Current;
            }
            usages.Add(chunk);
            string finish = FinishReasonName(chunk);
            bool withLogprobs = chunk.Logprobs != null;
            if (chat)
            {
                // OpenAI writes null content beside tool calls when the model said nothing else.
                string? content = calls.Count > 0 && answer.Length == 0 ? null : answer.ToString();
                var message = new AssistantMessage("assistant", content, choice.Reasoning!.SawReasoning ? reasoning.ToString() : null, calls.Count > 0 ? calls : null);
                chatChoices.Add(new ChatChoice(choice.Index, message, finish, withLogprobs ? ChatLogprobsOf(logprobs) : null));
            }
            else
            {
                textChoices.Add(new TextChoice(choice.Index, answer.ToString(), finish, withLogprobs ? TextLogprobsOf(choice, logprobs) : null));
            }
        }
        Usage usage = ToUsage(usages);
        context.Response.ContentType = "application/json";
        if (chat)
            await JsonSerializer.SerializeAsync(context.Response.Body, new ChatCompletion(id.Id, "chat.completion", id.Created, _model, chatChoices, usage), WireJson.Default.ChatCompletion, aborted);
        else
            await JsonSerializer.SerializeAsync(context.Response.Body, new TextCompletion(id.Id, "text_completion", id.Created, _model, textChoices, usage), WireJson.Default.TextCompletion, aborted);
    }

    private async Task StreamAsync(HttpContext context, ParsedRequest request, ResponseId id, List<Choice> choices, bool chat, CancellationToken aborted)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        if (chat)
            foreach (Choice choice in choices)
                await SendAsync(context, ChatChunk(id, choice.Index, new ChatDelta("assistant", "", null, null), null, null), aborted);
        var finals = new List<GenerationChunk>();
        var generated = new int[choices.Count];
        try
        {
            await foreach ((Choice choice, GenerationChunk chunk) in Merge(choices, aborted))
            {
                (string thought, string text) = choice.Split(chunk);
                string? finish = chunk.FinishReason != null ? FinishReasonName(chunk) : null;
                List<ToolCallWire>? calls = Choice.Deltas(chunk);
                int index = choices.IndexOf(choice);
                generated[index] += chunk.TokenIds.Count;
                if (thought.Length > 0 || text.Length > 0 || finish != null || calls != null || chunk.Logprobs != null)
                {
                    // Continuous usage counts the choice's tokens so far, those whose text is still held back included.
                    Usage? usage = request.ContinuousUsage
                        ? new Usage(chunk.PromptTokens, generated[index], chunk.PromptTokens + generated[index], new PromptTokensDetails(chunk.Usage?.CachedPromptTokens ?? 0))
                        : null;
                    if (chat)
                        await SendAsync(context, ChatChunk(id, choice.Index, new ChatDelta(null, text.Length > 0 ? text : null, thought.Length > 0 ? thought : null, calls), finish,
                            chunk.Logprobs != null ? ChatLogprobsOf(chunk.Logprobs) : null) with { Usage = usage }, aborted);
                    else
                        await SendAsync(context, new TextCompletion(id.Id, "text_completion", id.Created, _model,
                            [new TextChoice(choice.Index, text, finish, chunk.Logprobs != null ? TextLogprobsOf(choice, chunk.Logprobs) : null)], usage), aborted);
                }
                if (chunk.FinishReason != null)
                    finals.Add(chunk);
            }
            if (request.IncludeUsage && finals.Count == choices.Count)
            {
                Usage usage = ToUsage(finals);
                if (chat)
                    await SendAsync(context, new ChatCompletionChunk(id.Id, "chat.completion.chunk", id.Created, _model, [], usage), aborted);
                else
                    await SendAsync(context, new TextCompletion(id.Id, "text_completion", id.Created, _model, [], usage), aborted);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            // Headers are gone: report the failure as an event, as OpenAI-compatible servers do.
            logger.LogError(e, "Streaming {Id} failed", id.Id);
            await SendRawAsync(context, JsonSerializer.Serialize(new ErrorBody(new ErrorDetail("The server failed while generating.", ApiException.ServerError, null, null)), WireJson.Default.ErrorBody), aborted);
        }
        await SendRawAsync(context, "[DONE]", aborted);
    }

    // Interleaves the choices' chunks in the order they arrive; each choice ends with its final chunk.
    private static async IAsyncEnumerable<(Choice, GenerationChunk)> Merge(List<Choice> choices, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken aborted)
    {
        var merged = System.Threading.Channels.Channel.CreateUnbounded<(Choice, GenerationChunk)>();
        foreach (Choice choice in choices)
            choice.Pump = Pump(choice, merged.Writer);
        _ = Task.WhenAll(choices.Select(c => c.Pump)).ContinueWith(t => merged.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        await foreach ((Choice, GenerationChunk) item in merged.Reader.ReadAllAsync(aborted))
            yield return item;

        static async Task Pump(Choice choice, System.Threading.Channels.ChannelWriter<(Choice, GenerationChunk)> writer)
        {
            GenerationChunk chunk = choice.Chunks.Current;
            writer.TryWrite((choice, chunk));
            while (chunk.FinishReason == null && await choice.Chunks.MoveNextAsync())
                writer.TryWrite((choice, chunk = choice.Chunks.Current));
        }
    }

    private ChatLogprobs ChatLogprobsOf(IEnumerable<TokenLogprob> logprobs) =>
        new([.. logprobs.Select(l => new TokenLogprobWire(TokenText(l.TokenId), l.Logprob, TokenBytes(l.TokenId),
            [.. l.Top.Select(t => new TopLogprobWire(TokenText(t.TokenId), t.Logprob, TokenBytes(t.TokenId)))]))]);

    private TextLogprobs TextLogprobsOf(Choice choice, IReadOnlyList<TokenLogprob> logprobs)
    {
        var offsets = new List<int>();
        foreach (TokenLogprob l in logprobs)
        {
            offsets.Add(choice.TextOffset);
            choice.TextOffset += TokenText(l.TokenId).Length;
        }
        bool top = logprobs.Any(l => l.Top.Count > 0);
        return new TextLogprobs([.. logprobs.Select(l => TokenText(l.TokenId))], [.. logprobs.Select(l => l.Logprob)],
            top ? [.. logprobs.Select(l => l.Top.GroupBy(t => TokenText(t.TokenId)).ToDictionary(g => g.Key, g => g.First().Logprob))] : null, offsets);
    }

    private string TokenText(int token) => Encoding.UTF8.GetString(session.Tokenizer.TokenBytes(token));

    private int[] TokenBytes(int token) => [.. session.Tokenizer.TokenBytes(token).ToArray().Select(b => (int)b)];

    private ChatCompletionChunk ChatChunk(ResponseId id, int index, ChatDelta delta, string? finish, ChatLogprobs? logprobs) =>
        new(id.Id, "chat.completion.chunk", id.Created, _model, [new ChatChunkChoice(index, delta, finish, logprobs)], null);

    private static Task SendAsync(HttpContext context, ChatCompletionChunk chunk, CancellationToken cancellationToken) =>
        SendRawAsync(context, JsonSerializer.Serialize(chunk, WireJson.Default.ChatCompletionChunk), cancellationToken);

    private static Task SendAsync(HttpContext context, TextCompletion chunk, CancellationToken cancellationToken) =>
        SendRawAsync(context, JsonSerializer.Serialize(chunk, WireJson.Default.TextCompletion), cancellationToken);

    private static async Task SendRawAsync(HttpContext context, string data, CancellationToken cancellationToken)
    {
        await context.Response.WriteAsync("data: " + data + "\n\n", cancellationToken);
        await context.Response.Body.FlushAsync(cancellationToken);
    }

    // The prompt is counted once, as OpenAI does for n > 1; completions add up.
    private static Usage ToUsage(IReadOnlyList<GenerationChunk> finals)
    {
        GenerationUsage[] usages = [.. finals.Select(f => f.Usage ?? throw new InvalidOperationException("The session's last chunk carries no usage."))];
        int completion = usages.Sum(u => u.CompletionTokens);
        return new Usage(usages[0].PromptTokens, completion, usages[0].PromptTokens + completion, new PromptTokensDetails(usages[0].CachedPromptTokens));
    }

    private static string FinishReasonName(GenerationChunk last) => last.FinishReason switch
    {
        FinishReason.Length => "length",
        FinishReason.ToolCalls => "tool_calls",
        _ => "stop",
    };

    /// <summary>Writes OpenAI's error JSON with the exception's status, unless the response has already begun.</summary>
    public static async Task WriteErrorAsync(HttpContext context, ApiException error)
    {
        if (context.Response.HasStarted)
            return;
        context.Response.StatusCode = (int)error.Status;
        context.Response.ContentType = "application/json";
        var body = new ErrorBody(new ErrorDetail(error.Message, error.Type, error.Param, error.Code));
        await JsonSerializer.SerializeAsync(context.Response.Body, body, WireJson.Default.ErrorBody, CancellationToken.None);
    }
}
