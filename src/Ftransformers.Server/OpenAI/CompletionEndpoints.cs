using System.Net;
using System.Text;
using System.Text.Json;
using Ftransformers.Generation;
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
        IAsyncEnumerator<GenerationChunk>? chunks = null;
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

            // The first chunk is awaited before anything is written, so refusals still get their status code.
            GenerationChunk first;
            try
            {
                chunks = session.GenerateAsync(request.Generation, aborted).GetAsyncEnumerator(aborted);
                if (!await chunks.MoveNextAsync())
                    throw new InvalidOperationException("The session ended the stream without a final chunk.");
                first = chunks.Current;
            }
            catch (QueueFullException e)
            {
                context.Response.Headers.RetryAfter = server.Value.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
                throw new ApiException(HttpStatusCode.ServiceUnavailable, e.Message, null, "queue_full", ApiException.ServerError);
            }
            catch (ArgumentException e)
            {
                // The session refuses prompts that do not fit the context or hold unknown token ids: the input is at fault.
                throw ApiException.BadRequest(e.Message, request.InputField);
            }

            var response = new ResponseState(chat ? "chatcmpl-" : "cmpl-", chat ? new ReasoningParser() : null);
            if (request.Stream)
                await StreamAsync(context, request, response, first, chunks, chat, aborted);
            else
                await RespondAsync(context, response, first, chunks, chat, aborted);
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
            if (chunks != null)
                await chunks.DisposeAsync();
        }
    }

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

    private sealed class ResponseState(string idPrefix, ReasoningParser? reasoning)
    {
        public string Id { get; } = idPrefix + Guid.NewGuid().ToString("N");
        public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        public ReasoningParser? Reasoning { get; } = reasoning;

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
    }

    private async Task RespondAsync(HttpContext context, ResponseState state, GenerationChunk first, IAsyncEnumerator<GenerationChunk> chunks, bool chat, CancellationToken aborted)
    {
        var reasoning = new StringBuilder();
        var answer = new StringBuilder();
        GenerationChunk chunk = first;
        while (true)
        {
            (string thought, string text) = state.Split(chunk);
            reasoning.Append(thought);
            answer.Append(text);
            if (chunk.FinishReason != null || !await chunks.MoveNextAsync())
                break;
            chunk = chunks.Current;
        }
        Usage usage = ToUsage(chunk);
        string finish = FinishReasonName(chunk);
        context.Response.ContentType = "application/json";
        if (chat)
        {
            var message = new AssistantMessage("assistant", answer.ToString(), state.Reasoning!.SawReasoning ? reasoning.ToString() : null);
            await JsonSerializer.SerializeAsync(context.Response.Body, new ChatCompletion(state.Id, "chat.completion", state.Created, _model, [new ChatChoice(0, message, finish)], usage), WireJson.Default.ChatCompletion, aborted);
        }
        else
        {
            await JsonSerializer.SerializeAsync(context.Response.Body, new TextCompletion(state.Id, "text_completion", state.Created, _model, [new TextChoice(0, answer.ToString(), finish)], usage), WireJson.Default.TextCompletion, aborted);
        }
    }

    private async Task StreamAsync(HttpContext context, ParsedRequest request, ResponseState state, GenerationChunk first, IAsyncEnumerator<GenerationChunk> chunks, bool chat, CancellationToken aborted)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        if (chat)
            await SendAsync(context, ChatChunk(state, new ChatDelta("assistant", "", null), null), aborted);
        GenerationChunk chunk = first;
        try
        {
            while (true)
            {
                (string thought, string text) = state.Split(chunk);
                string? finish = chunk.FinishReason != null ? FinishReasonName(chunk) : null;
                if (thought.Length > 0 || text.Length > 0 || finish != null)
                {
                    if (chat)
                        await SendAsync(context, ChatChunk(state, new ChatDelta(null, text.Length > 0 ? text : null, thought.Length > 0 ? thought : null), finish), aborted);
                    else
                        await SendAsync(context, new TextCompletion(state.Id, "text_completion", state.Created, _model, [new TextChoice(0, text, finish)], null), aborted);
                }
                if (chunk.FinishReason != null)
                {
                    if (request.IncludeUsage)
                    {
                        Usage usage = ToUsage(chunk);
                        if (chat)
                            await SendAsync(context, new ChatCompletionChunk(state.Id, "chat.completion.chunk", state.Created, _model, [], usage), aborted);
                        else
                            await SendAsync(context, new TextCompletion(state.Id, "text_completion", state.Created, _model, [], usage), aborted);
                    }
                    break;
                }
                if (!await chunks.MoveNextAsync())
                    break;
                chunk = chunks.Current;
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            // Headers are gone: report the failure as an event, as OpenAI-compatible servers do.
            logger.LogError(e, "Streaming {Id} failed", state.Id);
            await SendRawAsync(context, JsonSerializer.Serialize(new ErrorBody(new ErrorDetail("The server failed while generating.", ApiException.ServerError, null, null)), WireJson.Default.ErrorBody), aborted);
        }
        await SendRawAsync(context, "[DONE]", aborted);
    }

    private ChatCompletionChunk ChatChunk(ResponseState state, ChatDelta delta, string? finish) =>
        new(state.Id, "chat.completion.chunk", state.Created, _model, [new ChatChunkChoice(0, delta, finish)], null);

    private static Task SendAsync(HttpContext context, ChatCompletionChunk chunk, CancellationToken cancellationToken) =>
        SendRawAsync(context, JsonSerializer.Serialize(chunk, WireJson.Default.ChatCompletionChunk), cancellationToken);

    private static Task SendAsync(HttpContext context, TextCompletion chunk, CancellationToken cancellationToken) =>
        SendRawAsync(context, JsonSerializer.Serialize(chunk, WireJson.Default.TextCompletion), cancellationToken);

    private static async Task SendRawAsync(HttpContext context, string data, CancellationToken cancellationToken)
    {
        await context.Response.WriteAsync("data: " + data + "\n\n", cancellationToken);
        await context.Response.Body.FlushAsync(cancellationToken);
    }

    private static Usage ToUsage(GenerationChunk last)
    {
        GenerationUsage usage = last.Usage ?? throw new InvalidOperationException("The session's last chunk carries no usage.");
        return new Usage(usage.PromptTokens, usage.CompletionTokens, usage.TotalTokens, new PromptTokensDetails(usage.CachedPromptTokens));
    }

    private static string FinishReasonName(GenerationChunk last) => last.FinishReason == FinishReason.Length ? "length" : "stop";

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
