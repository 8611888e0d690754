using System.Text.Json.Nodes;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.RegularExpressions;
using Ftransformers.Cli;
using NUnit.Framework;

namespace Ftransformers.Tests.Server;

[TestFixture]
public class ServeCommandTests
{
    /// <summary>Collects output from another thread and signals when a line matches.</summary>
    private sealed class WatchedWriter(Regex pattern) : TextWriter
    {
        private readonly StringBuilder _text = new();
        private readonly Lock _lock = new();
        public TaskCompletionSource<Match> Matched { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            lock (_lock)
            {
                _text.Append(value);
                if (value == '\n' && pattern.Match(_text.ToString()) is { Success: true } match)
                    Matched.TrySetResult(match);
            }
        }

        public override string ToString()
        {
            lock (_lock)
                return _text.ToString();
        }
    }

    /// <summary>A <c>serve</c> command running in-process on a free port, until disposed (which checks it exits cleanly).</summary>
    private sealed class RunningServe : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(2));
        private readonly StringWriter _error = new();
        private Task<int> _serving = null!;

        public HttpClient Http { get; private set; } = null!;

        public static async Task<RunningServe> StartAsync(params string[] flags)
        {
            var serve = new RunningServe();
            var output = new WatchedWriter(new Regex(@"on (http://127\.0\.0\.1:\d+/)"));
            serve._serving = Program.RunAsync(["serve", "--model-path", "synthetic:tiny", "--port", "0", "--served-model-name", "tiny", .. flags], output, serve._error, serve._stop.Token);
            Task first = await Task.WhenAny(output.Matched.Task, serve._serving, Task.Delay(TimeSpan.FromSeconds(60)));
            Assert.That(first, Is.SameAs(output.Matched.Task), $"the server did not report its address: {output} {serve._error}");
            serve.Http = new HttpClient { BaseAddress = new Uri(output.Matched.Task.Result.Groups[1].Value), Timeout = TimeSpan.FromSeconds(60) };
            return serve;
        }

        public Task<HttpResponseMessage> PostChatAsync(string body) =>
            Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await _stop.CancelAsync();
            Assert.That(await _serving.WaitAsync(TimeSpan.FromSeconds(30)), Is.Zero, _error.ToString());
            _stop.Dispose();
        }
    }

    [Test]
    public async Task Serve_ListensOnLoopback_RequiresTheKey_AndStopsOnCancellation()
    {
        await using RunningServe serve = await RunningServe.StartAsync("--api-key", "secret");
        HttpClient http = serve.Http;
        Assert.That((await http.GetAsync("/health")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await http.GetAsync("/v1/models")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "secret");
        string models = await http.GetStringAsync("/v1/models");
        Assert.That(models, Does.Contain("\"id\":\"tiny\""));
    }

    [Test]
    public async Task Serve_TakesAPastedSGLangCommandLine()
    {
        await using RunningServe serve = await RunningServe.StartAsync("--tp", "1",
            "--context-length", "96", "--mem-fraction-static", "0.5", "--trust-remote-code", "--enable-metrics", "--log-level", "warning",
            "--max-queued-requests", "8", "--kv-cache-dtype", "auto", "--page-size", "8", "--tool-call-parser", "deepseekv3",
            "--reasoning-parser", "deepseek-r1");
        Assert.That(await serve.Http.GetStringAsync("/v1/models"), Does.Contain("\"max_model_len\":96"), "the context is cut to --context-length");
        using HttpResponseMessage tooLong = await serve.PostChatAsync($$"""{"model": "tiny", "messages": [{"role": "user", "content": "{{new string('x', 120)}}"}], "max_tokens": 4}""");
        Assert.That(tooLong.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "a prompt longer than --context-length is refused");
        // Under deepseek-r1 the output starts inside <think>: with max_tokens short of any </think>, all of it is reasoning.
        using HttpResponseMessage response = await serve.PostChatAsync("""{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}""");
        string body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
        Assert.That(body, Does.Contain("\"reasoning_content\":").And.Contain("\"content\":\"\""));
    }

    [Test]
    public async Task Serve_OnTwoNumaNodes_AnswersAChatRequest()
    {
        await using RunningServe serve = await RunningServe.StartAsync("--numa-nodes", "2", "--cpuinfer", "2",
            "--max-total-tokens", "512", "--kv-cache-dtype", "bf16", "--page-size", "8", "--max-queued-requests", "4");
        using HttpResponseMessage response = await serve.PostChatAsync("""{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0}""");
        string body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
        Assert.That(body, Does.Contain("\"completion_tokens\":4"));
    }

    [Test]
    public async Task Serve_WithProfiling_ServesTheProfileBehindTheKey_JudgedAgainstTheBaseline()
    {
        string baseline = Path.Combine(Path.GetTempPath(), $"ftransformers-sysinfo-{Guid.NewGuid():N}.json");
        try
        {
            var output = new StringWriter();
            var error = new StringWriter();
            Assert.That(await Program.RunAsync(["sysinfo", "--cache", baseline, "--read-mib", "8", "--json"], output, error), Is.Zero, error.ToString());
            Assert.That(output.ToString(), Does.Contain("\"readGBps\""));

            await using RunningServe serve = await RunningServe.StartAsync("--api-key", "secret", "--enable-profile", "--sysinfo", baseline);
            HttpClient http = serve.Http;
            Assert.That((await http.GetAsync("/debug/profile")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "secret");
            using HttpResponseMessage chat = await serve.PostChatAsync("""{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0}""");
            Assert.That(chat.StatusCode, Is.EqualTo(HttpStatusCode.OK));

            JsonNode profile = JsonNode.Parse(await http.GetStringAsync("/debug/profile"))!;
            Assert.That((long)profile["prefill"]!["steps"]!, Is.EqualTo(1));
            Assert.That((long)profile["decode"]!["steps"]!, Is.EqualTo(3), "4 tokens: the prefill step samples the first");
            Assert.That(profile["machine"], Is.Not.Null);
            JsonArray parts = profile["parts"]!.AsArray();
            string[] names = [.. parts.Where(p => (string?)p!["kind"] == "decode").Select(p => (string)p!["part"]!)];
            Assert.That(names, Is.EqualTo(new[] { "Embedding", "Attention", "DenseMlp", "Router", "SharedExperts", "RoutedExperts", "Head", "Sampling", "Scheduling" }));
            JsonNode routed = parts.First(p => (string?)p!["kind"] == "decode" && (string?)p["part"] == "RoutedExperts")!;
            Assert.That((double)routed["gb_per_s"]!, Is.GreaterThan(0));
            Assert.That((double?)routed["bandwidth_share"], Is.GreaterThan(0));

            Assert.That(await http.GetStringAsync("/debug/profile?format=markdown"), Does.Contain("| part | ms / step |"));
            System.Xml.Linq.XDocument svg = System.Xml.Linq.XDocument.Parse(await http.GetStringAsync("/debug/profile?format=svg&reset=true"));
            Assert.That(svg.Root!.Name.LocalName, Is.EqualTo("svg"));
            Assert.That((long)JsonNode.Parse(await http.GetStringAsync("/debug/profile"))!["decode"]!["steps"]!, Is.Zero, "reset");
            Assert.That((await http.GetAsync("/debug/profile?format=xml")).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        }
        finally
        {
            File.Delete(baseline);
        }
    }

    [Test]
    public async Task Serve_PrintsItsMemoryPlan_AndRefusesAPoolTheMachineCannotHold()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        // 2^31 - 1 tokens of 3 layers x 48 F32 values: about 1.2 TB of KV cache.
        int exit = await Program.RunAsync(["serve", "--model-path", "synthetic:tiny", "--port", "0", "--max-total-tokens", "2147483647"], output, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(output.ToString(), Does.Contain("Memory plan:").And.Contain("weights, node 0:").And.Contain("KV cache pool: 2147483647 tokens, 1237.0 GB"));
        Assert.That(error.ToString(), Does.Contain("does not fit").And.Contain("KV cache pool 1237.0 GB").And.Contain("--max-total-tokens 2147483647"));
    }

    [Test]
    public async Task Serve_WithoutProfiling_HasNoProfileEndpoint()
    {
        await using RunningServe serve = await RunningServe.StartAsync();
        Assert.That((await serve.Http.GetAsync("/debug/profile")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [TestCase("--chunked-prefill-size", "0", "ChunkedPrefillSize")]
    [TestCase("--numa-nodes", "0", "NumaNodes")]
    [TestCase("--attention-backend", "cuda", "AttentionBackend")]
    [TestCase("--expert-backend", "ascend", "ExpertBackend")]
    [TestCase("--page-size", "0", "KvCachePageSize")]
    [TestCase("--max-queued-requests", "0", "MaxWaitingRequests")]
    [TestCase("--cpuinfer", "0", "CpuThreads")]
    [TestCase("--quantization", "int3", "Precision")]
    [TestCase("--port", "70000", "Port")]
    [TestCase("--max-running-requests", "0", "MaxRunningRequests")]
    // SGLang flags whose values cannot apply here are refused saying why.
    [TestCase("--tp", "2", "tensor parallelism")]
    [TestCase("--kv-cache-dtype", "fp8_e4m3", "FP8 KV cache is not supported")]
    [TestCase("--tool-call-parser", "qwen25", "qwen25")]
    [TestCase("--chat-template", "chatml", "chatml")]
    [TestCase("--context-length", "1000000", "exceeds the model's context")]
    [TestCase("--mem-fraction-static", "1.5", "MemoryFractionStatic must be in (0, 1]")]
    [TestCase("--log-level", "loud", "--log-level 'loud' is unknown")]
    [TestCase("--reasoning-parser", "qwen3", "qwen3")]
    public async Task Serve_OutOfRangeFlag_IsBadInput_NamingTheOption(string flag, string value, string option)
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["serve", "--model-path", "synthetic:tiny", flag, value], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain(option));
    }

    [Test]
    public async Task Serve_UnknownModel_IsBadInput()
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["serve", "--model-path", "synthetic:huge", "--port", "0"], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("'huge'"));
    }
}
