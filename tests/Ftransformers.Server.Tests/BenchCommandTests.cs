using System.Text.Json;
using System.Xml.Linq;
using Ftransformers.Cli;
using Ftransformers.Cli.Bench;
using NUnit.Framework;

namespace Ftransformers.Tests.Server;

[TestFixture]
public class BenchCommandTests
{
    private string _dir = null!;

    [SetUp]
    public void MakeFolder() => _dir = Directory.CreateTempSubdirectory("ftransformers-bench-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    private async Task<(int Exit, string Output, string Error)> Bench(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        int exit = await Program.RunAsync(["bench", .. args, "--output", _dir], output, error, timeout.Token);
        return (exit, output.ToString(), error.ToString());
    }

    private BenchReport AssertReportFiles(int levels)
    {
        string json = File.ReadAllText(Path.Combine(_dir, "report.json"));
        BenchReport report = BenchReport.Read(json);
        using (JsonDocument.Parse(json))
        {
        }
        Assert.That(report.Levels, Has.Count.EqualTo(levels));

        string markdown = File.ReadAllText(Path.Combine(_dir, "report.md"));
        Assert.That(markdown, Does.StartWith("# Ftransformers benchmark"));
        Assert.That(markdown, Does.Contain($"| command | `{report.CommandLine}` |"));
        Assert.That(markdown, Does.Contain("| parallel | requests | failed | req/s | output tok/s | total tok/s |"));
        Assert.That(markdown, Does.Contain("| parallel | measure | mean | p50 | p90 | p99 |"));
        Assert.That(markdown, Does.Contain(report.Machine.Cpu));

        XDocument svg = XDocument.Load(Path.Combine(_dir, "chart.svg"));
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.That(svg.Root!.Name, Is.EqualTo(ns + "svg"));
        Assert.That(svg.Descendants(ns + "polyline").Count(), Is.EqualTo(3), "throughput, TTFT mean and TTFT p99");
        Assert.That(svg.Descendants(ns + "circle").Count(), Is.EqualTo(3 * levels));
        return report;
    }

    [Test]
    public async Task InProcess_RunsEachLevel_AndWritesReportsThatParse()
    {
        var (exit, output, error) = await Bench("--model", "synthetic:tiny", "--parallel", "1", "2", "--number", "2", "--input-length", "24",
            "--output-length", "4", "--prefix-length", "8", "--warmup", "0");
        Assert.That(exit, Is.Zero, error);
        Assert.That(error, Does.Contain("[##############################] 4/4 requests"));
        Assert.That(output, Does.Contain("report.md").And.Contain("report.json").And.Contain("chart.svg"));

        BenchReport report = AssertReportFiles(levels: 2);
        Assert.That(report.Target, Is.EqualTo("in-process"));
        Assert.That(report.Model, Is.EqualTo("synthetic:tiny"));
        Assert.That(report.CommandLine, Does.StartWith("ftransformers bench --model synthetic:tiny --parallel 1 2 --number 2"));
        Assert.That(report.Workload, Is.EqualTo(new BenchWorkload(BenchApi.Chat, new LengthRange(24, 24), new LengthRange(4, 4), 8, 42, 0, true, 0)));
        foreach (LevelResult level in report.Levels)
        {
            Assert.That((level.Succeeded, level.Failed), Is.EqualTo((2, 0)));
            Assert.That(level.AverageOutputTokens, Is.EqualTo(4), "EOS is ignored, so every request generates all its tokens");
            // 24 tokens of text (the byte tokenizer sizes them exactly) plus BOS, <｜User｜> and <｜Assistant｜>.
            Assert.That(level.AverageInputTokens, Is.EqualTo(24 + 3));
            Assert.That(level.TimeToFirstToken!.Mean, Is.GreaterThan(0));
            Assert.That(level.Latency!.P99, Is.GreaterThanOrEqualTo(level.TimeToFirstToken.P99));
            Assert.That(level.TimePerOutputToken, Is.Not.Null);
            Assert.That(level.InterTokenLatency, Is.Not.Null);
            Assert.That(level.OutputTokensPerSecond, Is.EqualTo(8 / level.DurationSeconds).Within(1e-9));
            // The 8-token shared prefix is cached after the first request, so every level reuses some prompt tokens.
            Assert.That(level.CacheHitRate, Is.GreaterThan(0).And.LessThan(1));
        }
        Assert.That(report.Levels.Select(l => l.Parallel), Is.EqualTo(new[] { 1, 2 }));
    }

    [Test]
    public async Task InProcess_ShallowModel_ReportsPerLayerDecodeTimesAndTheProjectionTo61Layers()
    {
        var (exit, _, error) = await Bench("--model", "synthetic:tiny", "--parallel", "1", "2", "--number", "2", "--input-length", "16",
            "--output-length", "6", "--warmup", "0");
        Assert.That(exit, Is.Zero, error);
        BenchReport report = AssertReportFiles(levels: 2);

        string markdown = File.ReadAllText(Path.Combine(_dir, "report.md"));
        int section = markdown.IndexOf("## Projected decode at DeepSeek-V3 depth (61 layers)", StringComparison.Ordinal);
        Assert.That(section, Is.GreaterThan(0));
        Assert.That(markdown[section..], Does.Contain("A projection, not a measurement").And.Contain("3 layers (1 dense, 2 MoE)"));
        string[] rows = [.. markdown[section..].Split('\n').SkipWhile(l => !l.StartsWith("| parallel | decode steps", StringComparison.Ordinal)).Skip(2).TakeWhile(l => l.StartsWith('|'))];
        Assert.That(rows, Has.Length.EqualTo(2));
        foreach ((string row, LevelResult level) in rows.Zip(report.Levels))
        {
            double[] v = [.. row.Trim('|').Split('|').Select(c => double.Parse(c, System.Globalization.CultureInfo.InvariantCulture))];
            (double parallel, double steps, double head, double attention, double dense, double moe, double projected) = (v[0], v[1], v[4], v[5], v[6], v[7], v[8]);
            Assert.That(parallel, Is.EqualTo(level.Parallel));
            // Each request decodes 5 tokens after the one its prefill step gives; mixed steps are not counted.
            Assert.That(steps, Is.InRange(1, 10));
            Assert.That(new[] { head, attention, dense, moe }, Has.All.GreaterThan(0));
            Assert.That(projected, Is.EqualTo(head + 3 * (attention + dense) + 58 * (attention + moe)).Within(0.001 * 130));
            Assert.That(level.Decode!.ProjectedStepSeconds * 1000, Is.EqualTo(projected).Within(0.001));
        }
    }

    [Test]
    public async Task InProcess_Profile_WritesEachLevelsTableAndFlameGraph_AgainstTheBaseline()
    {
        string baseline = Path.Combine(_dir, "sysinfo.json");
        Assert.That(await Program.RunAsync(["sysinfo", "--cache", baseline, "--read-mib", "8"], new StringWriter(), new StringWriter()), Is.Zero);
        var (exit, output, error) = await Bench("--model", "synthetic:tiny", "--parallel", "1", "2", "--number", "2", "--input-length", "16",
            "--output-length", "4", "--warmup", "0", "--profile", "--sysinfo", baseline);
        Assert.That(exit, Is.Zero, error);
        Assert.That(output, Does.Contain("profile-p1.svg").And.Contain("profile-p2.svg"));
        BenchReport report = AssertReportFiles(levels: 2);
        Assert.That(report.Baseline, Is.Not.Null);
        foreach (LevelResult level in report.Levels)
        {
            Assert.That(level.Profile!.Select(r => (r.Kind, r.Part)), Does.Contain((Ftransformers.Inference.StepKind.Prefill, Ftransformers.Backends.ModelPart.Attention))
                .And.Contain((Ftransformers.Inference.StepKind.Decode, Ftransformers.Backends.ModelPart.RoutedExperts)));
            Assert.That(level.Profile!.Where(r => r.Part == Ftransformers.Backends.ModelPart.RoutedExperts).Select(r => r.BandwidthShare), Has.All.GreaterThan(0));
            XDocument flame = XDocument.Load(Path.Combine(_dir, $"profile-p{level.Parallel}.svg"));
            Assert.That(flame.Descendants(XNamespace.Get("http://www.w3.org/2000/svg") + "rect").Count(), Is.GreaterThan(20));
        }
        string markdown = File.ReadAllText(Path.Combine(_dir, "report.md"));
        Assert.That(markdown, Does.Contain("## Profile, parallel 1 (profile-p1.svg)").And.Contain("### Decode steps").And.Contain("### Prefill steps")
            .And.Contain("| routed experts |").And.Contain("Judged against this machine's baseline"));
    }

    [Test]
    public async Task Profile_AgainstAServer_IsBadInput()
    {
        var (exit, _, error) = await Bench("--model", "tiny", "--url", "http://127.0.0.1:1", "--profile");
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error, Does.Contain("/debug/profile"));
    }

    [Test]
    public async Task AgainstTheServer_WithoutATokenizer_SizesPromptsFromUsage()
    {
        await using TestServer server = await TestServer.StartAsync(apiKey: "k");
        var (exit, _, error) = await Bench("--model", TestServer.Model, "--url", server.Address.ToString(), "--api-key", "k", "--parallel", "1", "2",
            "--number", "2", "--input-length", "40", "--output-length", "3", "--prefix-length", "10");
        Assert.That(exit, Is.Zero, error);

        BenchReport report = AssertReportFiles(levels: 2);
        Assert.That(report.Target, Is.EqualTo(new Uri(server.Address, "v1/chat/completions").ToString()));
        foreach (LevelResult level in report.Levels)
        {
            Assert.That((level.Succeeded, level.Failed), Is.EqualTo((2, 0)), string.Join("; ", level.Errors));
            Assert.That(level.AverageOutputTokens, Is.EqualTo(3));
            // Sized by an estimate of tokens per word, learnt from two calibration requests.
            Assert.That(level.AverageInputTokens, Is.InRange(40 * 0.6, 40 * 1.5));
        }
    }

    [Test]
    public async Task AgainstTheServer_CompletionsApiWithTokenizer_SizesPromptsExactly()
    {
        await using TestServer server = await TestServer.StartAsync();
        var (exit, _, error) = await Bench("--model", TestServer.Model, "--url", server.Address + "v1", "--api", "completions",
            "--tokenizer-path", "synthetic:tiny", "--parallel", "2", "--number", "2", "--input-length", "20", "--output-length", "2");
        Assert.That(exit, Is.Zero, error);

        BenchReport report = AssertReportFiles(levels: 1);
        Assert.That(report.Workload.Api, Is.EqualTo(BenchApi.Completions));
        Assert.That(report.Levels[0].AverageInputTokens, Is.EqualTo(20 + 1), "the text plus BOS");
        Assert.That(report.Levels[0].Succeeded, Is.EqualTo(2));
    }

    [Test]
    public async Task FailedRequests_AreReportedAndFailTheRun()
    {
        await using TestServer server = await TestServer.StartAsync();
        server.Session.RefuseNext(1);
        var (exit, _, _) = await Bench("--model", TestServer.Model, "--url", server.Address.ToString(), "--tokenizer-path", "synthetic:tiny",
            "--parallel", "1", "--number", "2", "--input-length", "8", "--output-length", "2", "--warmup", "0");

        Assert.That(exit, Is.EqualTo(Program.ExitMismatch));
        BenchReport report = AssertReportFiles(levels: 1);
        Assert.That((report.Levels[0].Succeeded, report.Levels[0].Failed), Is.EqualTo((1, 1)));
        Assert.That(report.Levels[0].Errors.Single(), Does.StartWith("HTTP 503"));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "report.md")), Does.Contain("## Errors"));
    }

    [Test]
    public async Task UnknownServedModel_IsBadInput()
    {
        await using TestServer server = await TestServer.StartAsync();
        var (exit, _, error) = await Bench("--model", "nope", "--url", server.Address.ToString());
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error, Does.Contain("'nope'").And.Contain(TestServer.Model));
    }

    [TestCase("--prefix-length", "200", "--prefix-length")]
    [TestCase("--parallel", "0", "--parallel")]
    [TestCase("--input-length", "0", "--input-length")]
    [TestCase("--input-length", "40:20", "--input-length")]
    [TestCase("--output-length", "x", "--output-length")]
    [TestCase("--request-rate", "0", "--request-rate")]
    [TestCase("--interference", "0", "--interference")]
    [TestCase("--dataset", "/nonexistent/prompts.jsonl", "prompts.jsonl")]
    public async Task OutOfRangeFlag_IsBadInput_NamingIt(string flag, string value, string named)
    {
        var (exit, _, error) = await Bench("--model", "synthetic:tiny", flag, value);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error, Does.Contain(named));
    }

    // Flags of the other target are refused rather than ignored.
    [TestCase("--url", "http://127.0.0.1:9/", "--numa-nodes", "2", "--numa-nodes")]
    [TestCase("--url", "http://127.0.0.1:9/", "--kv-cache-dtype", "bf16", "--kv-cache-dtype")]
    [TestCase("--input-length", "16", "--api-key", "k", "--api-key")]
    [TestCase("--input-length", "16", "--timeout", "5", "--timeout")]
    public async Task AFlagOfTheOtherTarget_IsBadInput_NamingIt(string flag1, string value1, string flag2, string value2, string named)
    {
        var (exit, _, error) = await Bench("--model", "synthetic:tiny", flag1, value1, flag2, value2);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error, Does.Contain(named));
    }

    [Test]
    public void LengthRange_DrawsUniformlyWithinItsBounds_TheSameForASeed()
    {
        var range = new LengthRange(256, 4096);
        int[] draws = [.. Enumerable.Range(0, 20000).Select(i => range.Of(seed: 7, i, stream: 1))];
        Assert.That(draws, Has.All.InRange(256, 4096));
        Assert.That(draws.Average(), Is.EqualTo((256 + 4096) / 2.0).Within(0.02 * 2176));
        // Each quarter of the range holds a quarter of the draws.
        for (int q = 0; q < 4; q++)
            Assert.That(draws.Count(d => (d - 256) * 4 / (4096 - 256 + 1) == q) / 20000.0, Is.EqualTo(0.25).Within(0.015), $"quarter {q}");
        Assert.That(Enumerable.Range(0, 100).Select(i => range.Of(7, i, 1)), Is.EqualTo(draws.Take(100)), "the same seed draws the same lengths");
        Assert.That(Enumerable.Range(0, 100).Select(i => range.Of(8, i, 1)), Is.Not.EqualTo(draws.Take(100)));
        Assert.That(new LengthRange(32, 32).Of(7, 3, 1), Is.EqualTo(32));
    }

    [Test]
    public void ArrivalSchedule_IsAPoissonProcessAtTheRate_TheSameForASeed()
    {
        const double rate = 5;
        double[] times = ArrivalSchedule.Poisson(rate, 20001, seed: 3);
        double[] gaps = [.. times.Zip(times.Skip(1), (a, b) => b - a)];
        Assert.That(times[0], Is.Zero);
        Assert.That(gaps, Has.All.GreaterThanOrEqualTo(0));
        double mean = gaps.Average(), sd = Math.Sqrt(gaps.Average(g => (g - mean) * (g - mean)));
        Assert.That(mean, Is.EqualTo(1 / rate).Within(0.02 / rate));
        Assert.That(sd / mean, Is.EqualTo(1).Within(0.03), "exponential gaps: the deviation equals the mean");
        Assert.That(gaps.Count(g => g > 1 / rate) / (double)gaps.Length, Is.EqualTo(Math.Exp(-1)).Within(0.015), "P(gap > mean) = 1/e");
        Assert.That(ArrivalSchedule.Poisson(rate, 100, seed: 3), Is.EqualTo(times.Take(100)));
    }

    [Test]
    public async Task InProcess_LengthRangesAndRequestRate_DrawEachRequestsLengths()
    {
        var (exit, _, error) = await Bench("--model", "synthetic:tiny", "--parallel", "2", "--number", "6", "--input-length", "16:40",
            "--output-length", "2:6", "--request-rate", "50", "--warmup", "0");
        Assert.That(exit, Is.Zero, error);
        BenchReport report = AssertReportFiles(levels: 1);
        LevelResult level = report.Levels[0];
        Assert.That(level.Succeeded, Is.EqualTo(6));
        // The byte tokenizer counts exactly: the lengths are those drawn for the seed, plus the chat template's 3 tokens.
        double input = Enumerable.Range(0, 6).Average(i => new LengthRange(16, 40).Of(42, i, 1)) + 3;
        double output = Enumerable.Range(0, 6).Average(i => new LengthRange(2, 6).Of(42, i, 2));
        Assert.That((level.AverageInputTokens, level.AverageOutputTokens), Is.EqualTo((input, output)));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "report.md")), Does.Contain("input 16:40 tokens").And.Contain("output 2:6 tokens").And.Contain("open loop at 50 requests/s"));
    }

    [Test]
    public async Task InProcess_Dataset_SendsItsPromptsInOrder()
    {
        string dataset = Path.Combine(_dir, "prompts.jsonl");
        File.WriteAllLines(dataset, ["""{"prompt": "Hello there"}""", "", """{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "max_tokens": 3}"""]);
        var (exit, _, error) = await Bench("--model", "synthetic:tiny", "--number", "4", "--output-length", "5", "--warmup", "0", "--dataset", dataset);
        Assert.That(exit, Is.Zero, error);
        LevelResult level = AssertReportFiles(levels: 1).Levels[0];
        Assert.That(level.AverageOutputTokens, Is.EqualTo((5 + 3 + 5 + 3) / 4.0));

        File.WriteAllLines(dataset, ["""{"prompt": "ok"}""", """{"text": "no"}"""]);
        (exit, _, error) = await Bench("--model", "synthetic:tiny", "--dataset", dataset);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error, Does.Contain("prompts.jsonl line 2"));
    }

    [Test]
    public async Task InProcess_Interference_MeasuresTheStreamsBeforeAndDuringALongPrefill()
    {
        var (exit, _, error) = await Bench("--model", "synthetic:tiny", "--parallel", "2", "--input-length", "16", "--output-length", "2000",
            "--interference", "300", "--chunked-prefill-size", "32", "--warmup", "0");
        Assert.That(exit, Is.Zero, error);
        BenchReport report = BenchReport.Read(File.ReadAllText(Path.Combine(_dir, "report.json")));
        InterferenceResult result = report.Levels.Single().Interference!;
        Assert.That(result.Streams, Is.EqualTo(2));
        Assert.That(result.LongPromptTokens, Is.EqualTo(300 + 3));
        Assert.That(result.LongPromptTtft, Is.GreaterThan(0));
        Assert.That(result.Before!.P99, Is.GreaterThan(0));
        Assert.That(result.During!.P99, Is.GreaterThan(0));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "report.md")), Does.Contain("## Long-prompt interference").And.Contain("| 2 | 303 |"));
    }

    [Test]
    public void Distribution_InterpolatesPercentilesLikeNumpy()
    {
        Distribution d = Distribution.Of([4, 1, 3, 2])!;
        Assert.That(d.Mean, Is.EqualTo(2.5));
        Assert.That(d.P50, Is.EqualTo(2.5));
        Assert.That(d.P90, Is.EqualTo(3.7).Within(1e-12));
        Assert.That(d.P99, Is.EqualTo(3.97).Within(1e-12));
        Assert.That(Distribution.Of([]), Is.Null);
    }

    [Test]
    public void PromptFactory_SharesThePrefixAndNothingElse()
    {
        var factory = new PromptFactory(text => text.Length, seed: 5);
        BenchPrompt a = factory.Prompt(0, 50, 20), b = factory.Prompt(1, 50, 20);
        Assert.That(a.SharedPrefix, Is.EqualTo(b.SharedPrefix));
        Assert.That(a.SharedPrefix.Length, Is.EqualTo(20));
        Assert.That((a.Text.Length, b.Text.Length), Is.EqualTo((30, 30)));
        Assert.That(a.Text[0], Is.Not.EqualTo(b.Text[0]));
    }
}
