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

    [Test]
    public async Task Serve_ListensOnLoopback_RequiresTheKey_AndStopsOnCancellation()
    {
        var output = new WatchedWriter(new Regex(@"on (http://127\.0\.0\.1:\d+/)"));
        var error = new StringWriter();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        Task<int> serving = Program.RunAsync(["serve", "--model-path", "synthetic:tiny", "--port", "0", "--served-model-name", "tiny", "--api-key", "secret"],
            output, error, stop.Token);

        Task first = await Task.WhenAny(output.Matched.Task, serving, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.That(first, Is.SameAs(output.Matched.Task), $"the server did not report its address: {output} {error}");
        var address = new Uri(output.Matched.Task.Result.Groups[1].Value);

        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
        Assert.That((await http.GetAsync("/health")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await http.GetAsync("/v1/models")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "secret");
        string models = await http.GetStringAsync("/v1/models");
        Assert.That(models, Does.Contain("\"id\":\"tiny\""));

        await stop.CancelAsync();
        Assert.That(await serving.WaitAsync(TimeSpan.FromSeconds(30)), Is.Zero, error.ToString());
    }

    [Test]
    public async Task Serve_TakesAPastedSGLangCommandLine()
    {
        var output = new WatchedWriter(new Regex(@"on (http://127\.0\.0\.1:\d+/)"));
        var error = new StringWriter();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        Task<int> serving = Program.RunAsync(["serve", "--model-path", "synthetic:tiny", "--port", "0", "--served-model-name", "tiny", "--tp", "1",
            "--context-length", "96", "--mem-fraction-static", "0.5", "--trust-remote-code", "--enable-metrics", "--log-level", "warning",
            "--max-queued-requests", "8", "--kv-cache-dtype", "auto", "--page-size", "8", "--tool-call-parser", "deepseekv3",
            "--reasoning-parser", "deepseek-r1"], output, error, stop.Token);

        Task first = await Task.WhenAny(output.Matched.Task, serving, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.That(first, Is.SameAs(output.Matched.Task), $"the server did not report its address: {output} {error}");
        using var http = new HttpClient { BaseAddress = new Uri(output.Matched.Task.Result.Groups[1].Value), Timeout = TimeSpan.FromSeconds(60) };
        Assert.That(await http.GetStringAsync("/v1/models"), Does.Contain("\"max_model_len\":96"), "the context is cut to --context-length");
        using HttpResponseMessage tooLong = await http.PostAsync("/v1/chat/completions",
            new StringContent($$"""{"model": "tiny", "messages": [{"role": "user", "content": "{{new string('x', 120)}}"}], "max_tokens": 4}""", Encoding.UTF8, "application/json"));
        Assert.That(tooLong.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "a prompt longer than --context-length is refused");
        // Under deepseek-r1 the output starts inside <think>: with max_tokens short of any </think>, all of it is reasoning.
        using HttpResponseMessage response = await http.PostAsync("/v1/chat/completions",
            new StringContent("""{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}""", Encoding.UTF8, "application/json"));
        string body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
        Assert.That(body, Does.Contain("\"reasoning_content\":").And.Contain("\"content\":\"\""));

        await stop.CancelAsync();
        Assert.That(await serving.WaitAsync(TimeSpan.FromSeconds(30)), Is.Zero, error.ToString());
    }

    [TestCase("--tp", "2", "tensor parallelism")]
    [TestCase("--kv-cache-dtype", "fp8_e4m3", "FP8 KV cache is not supported")]
    [TestCase("--tool-call-parser", "qwen25", "DeepSeek-V3's tool-call format")]
    [TestCase("--context-length", "1000000", "exceeds the model's context")]
    [TestCase("--mem-fraction-static", "1.5", "MemoryFractionStatic must be in (0, 1]")]
    [TestCase("--log-level", "loud", "--log-level 'loud' is unknown")]
    [TestCase("--reasoning-parser", "qwen3", "qwen3")]
    public async Task Serve_RefusesAFlagValueItCannotHonour_SayingWhy(string flag, string value, string message)
    {
        var error = new StringWriter();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        int exit = await Program.RunAsync(["serve", "--model-path", "synthetic:tiny", "--port", "0", flag, value], TextWriter.Null, error, stop.Token);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput), error.ToString());
        Assert.That(error.ToString(), Does.Contain(message));
    }

    [Test]
    public async Task Serve_OnTwoNumaNodes_AnswersAChatRequest()
    {
        var output = new WatchedWriter(new Regex(@"on (http://127\.0\.0\.1:\d+/)"));
        var error = new StringWriter();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        Task<int> serving = Program.RunAsync(["serve", "--model-path", "synthetic:tiny", "--port", "0", "--served-model-name", "tiny", "--numa-nodes", "2", "--cpuinfer", "2",
            "--max-total-tokens", "512", "--kv-cache-dtype", "bf16", "--page-size", "8", "--max-queued-requests", "4"], output, error, stop.Token);

        Task first = await Task.WhenAny(output.Matched.Task, serving, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.That(first, Is.SameAs(output.Matched.Task), $"the server did not report its address: {output} {error}");
        using var http = new HttpClient { BaseAddress = new Uri(output.Matched.Task.Result.Groups[1].Value), Timeout = TimeSpan.FromSeconds(60) };
        using HttpResponseMessage response = await http.PostAsync("/v1/chat/completions",
            new StringContent("""{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0}""", Encoding.UTF8, "application/json"));
        string body = await response.Content.ReadAsStringAsync();
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
        Assert.That(body, Does.Contain("\"completion_tokens\":4"));

        await stop.CancelAsync();
        Assert.That(await serving.WaitAsync(TimeSpan.FromSeconds(30)), Is.Zero, error.ToString());
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
