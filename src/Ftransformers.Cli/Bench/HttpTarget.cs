using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ftransformers.Tokenization;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>
/// Any OpenAI-compatible server, driven with streaming requests (<c>stream_options.include_usage</c>, and SGLang's and
/// vLLM's <c>ignore_eos</c> and <c>continuous_usage_stats</c>) so that each token's arrival is timed: an event that
/// carries several tokens (its usage count says how many) counts as that many gaps.
/// </summary>
internal sealed class HttpTarget : IBenchTarget
{
    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private readonly BenchApi _api;
    private readonly ITextTokenizer? _tokenizer;

    /// <param name="url">The server (<c>http://host:port</c>), its <c>/v1</c> base, or the full endpoint.</param>
    /// <param name="model">The model name sent in requests.</param>
    /// <param name="api">Chat or text completions (ignored when <paramref name="url"/> names the endpoint).</param>
    /// <param name="apiKey">Sent as a bearer token when set.</param>
    /// <param name="tokenizer">For sizing prompts exactly; null estimates from the server's usage reports.</param>
    /// <param name="timeout">Longest a request may take.</param>
    public HttpTarget(string url, string model, BenchApi api, string? apiKey, ITextTokenizer? tokenizer, TimeSpan timeout)
    {
        string trimmed = url.TrimEnd('/');
        if (trimmed.EndsWith("/chat/completions", StringComparison.Ordinal))
            api = BenchApi.Chat;
        else if (trimmed.EndsWith("/completions", StringComparison.Ordinal))
            api = BenchApi.Completions;
        else
            trimmed = (trimmed.EndsWith("/v1", StringComparison.Ordinal) ? trimmed : trimmed + "/v1") + (api == BenchApi.Chat ? "/chat/completions" : "/completions");
        if (!Uri.TryCreate(trimmed, UriKind.Absolute, out Uri? endpoint) || endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--url '{url}' is not an http(s) URL.");
        _endpoint = endpoint;
        _api = api;
        _tokenizer = tokenizer;
        Model = model;
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = timeout };
        if (apiKey != null)
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    }

    public string Description => _endpoint.ToString();
    public string Model { get; }
    public string? Preset { get; private set; }
    public ForwardProfile? Profile => null;

    /// <summary>The API actually driven (the URL may name it).</summary>
    public BenchApi Api => _api;

    /// <summary>Checks that the server serves the model and reads its preset, when it reports one.</summary>
    public async Task ProbeModelAsync(CancellationToken cancellationToken)
    {
        string path = _endpoint.AbsolutePath;
        int v1 = path.IndexOf("/v1/", StringComparison.Ordinal);
        Uri models = new(_endpoint, (v1 >= 0 ? path[..v1] : "") + "/v1/models");
        using HttpResponseMessage response = await _http.GetAsync(models, cancellationToken);
        if (!response.IsSuccessStatusCode)
            return; // not every server lists models; the first request will tell
        JsonNode? list = JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
        JsonArray data = list?["data"] as JsonArray ?? [];
        JsonNode? card = data.FirstOrDefault(m => (string?)m?["id"] == Model);
        if (card == null)
            throw new ArgumentException($"The server at {models} does not serve '{Model}'; it serves: {string.Join(", ", data.Select(m => (string?)m?["id"]))}.");
        Preset = (string?)card["quantization"];
    }

    public async Task<Func<string, int>> TokenCounterAsync(CancellationToken cancellationToken)
    {
        if (_tokenizer is { } tokenizer)
            return text => tokenizer.Encode(text).Count;
        // No tokenizer here: learn tokens per word from the server's usage for a short and a long prompt.
        var factory = new PromptFactory(text => CountWords(text), 0);
        var probe = new BenchWorkload(_api, new LengthRange(1, 1), new LengthRange(1, 1), 0, 0, 0, true, 0);
        RequestResult one = await SendAsync(new BenchPrompt("", factory.Text(1, new Random(1))), probe, cancellationToken);
        RequestResult many = await SendAsync(new BenchPrompt("", factory.Text(65, new Random(2))), probe, cancellationToken);
        if (!one.Succeeded || !many.Succeeded)
            throw new InvalidOperationException($"Calibration requests to {_endpoint} failed: {one.Error ?? many.Error}");
        double perWord = Math.Max(0.1, (many.PromptTokens - one.PromptTokens) / 64.0);
        return text => (int)Math.Round(CountWords(text) * perWord);
    }

    private static int CountWords(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;

    public async Task<RequestResult> SendAsync(BenchPrompt prompt, BenchWorkload workload, CancellationToken cancellationToken, Action<int>? onTokens = null)
    {
        var body = new JsonObject
        {
            ["model"] = Model,
            ["max_tokens"] = prompt.MaxTokens ?? workload.Output.Min,
            ["temperature"] = workload.Temperature,
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true, ["continuous_usage_stats"] = true },
        };
        if (workload.IgnoreEos)
            body["ignore_eos"] = true;
        if (_api == BenchApi.Chat)
        {
            var messages = new JsonArray();
            foreach (var message in prompt.ChatMessages())
                messages.Add(new JsonObject { ["role"] = message.Role, ["content"] = message.Content });
            body["messages"] = messages;
        }
        else
        {
            body["prompt"] = prompt.SharedPrefix + prompt.Text;
        }

        long start = Stopwatch.GetTimestamp();
        double Now() => Stopwatch.GetElapsedTime(start).TotalSeconds;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
            using HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                string error = await response.Content.ReadAsStringAsync(cancellationToken);
                return RequestResult.Failed($"HTTP {(int)response.StatusCode}: {Shorten(error)}", Now());
            }
            await using Stream stream = await response.Content.ReadAsStreamAsync(cancellationToken);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            double? firstToken = null;
            double previous = 0;
            int chunks = 0, counted = 0;
            var gaps = new List<double>();
            JsonNode? usage = null;
            while (await reader.ReadLineAsync(cancellationToken) is { } line)
            {
                if (!line.StartsWith("data:", StringComparison.Ordinal))
                    continue;
                string data = line[5..].Trim();
                if (data == "[DONE]")
                    break;
                JsonNode? chunk = JsonNode.Parse(data);
                if (chunk?["error"] is { } error)
                    return RequestResult.Failed($"Server error during the stream: {Shorten(error.ToJsonString())}", Now());
                usage = chunk?["usage"] is JsonObject u ? u : usage;
                // With continuous usage, the count says how many tokens arrived since the last event.
                int? total = chunk?["usage"] is JsonObject current ? (int?)current["completion_tokens"] : null;
                JsonNode? choice = (chunk?["choices"] as JsonArray)?.FirstOrDefault();
                string? text = _api == BenchApi.Chat
                    ? (string?)choice?["delta"]?["content"] + (string?)choice?["delta"]?["reasoning_content"]
                    : (string?)choice?["text"];
                // A token arrives with text, or with the finish reason: the last token may complete no character.
                bool finished = choice?["finish_reason"] is JsonValue finish && finish.GetValueKind() == JsonValueKind.String;
                if (string.IsNullOrEmpty(text) && !finished)
                    continue;
                int tokens = total is { } sum ? sum - counted : 1;
                if (tokens <= 0)
                    continue; // a finish reason with no new token
                counted += tokens;
                double now = Now();
                onTokens?.Invoke(tokens);
                if (firstToken == null)
                    firstToken = now;
                else
                    gaps.AddRange(Enumerable.Repeat((now - previous) / tokens, tokens));
                previous = now;
                chunks++;
            }
            double latency = Now();
            if (firstToken == null)
                return RequestResult.Failed("The stream carried no tokens.", latency);
            int completion = (int?)usage?["completion_tokens"] ?? chunks;
            return new RequestResult
            {
                PromptTokens = (int?)usage?["prompt_tokens"] ?? 0,
                CachedPromptTokens = (int?)usage?["prompt_tokens_details"]?["cached_tokens"] ?? 0,
                CompletionTokens = completion,
                TimeToFirstToken = firstToken.Value,
                Latency = latency,
                InterTokenLatencies = gaps,
            };
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or IOException or InvalidOperationException
            || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return RequestResult.Failed(e is OperationCanceledException ? $"Timed out after {_http.Timeout.TotalSeconds:F0} s" : $"{e.GetType().Name}: {e.Message}", Now());
        }
    }

    private static string Shorten(string text) => text.Length <= 300 ? text : text[..300] + "...";

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}
