using System.Text.RegularExpressions;
using Ftransformers.Cli;
using Ftransformers.Hosting;
using Microsoft.Extensions.Configuration;
using NUnit.Framework;

namespace Ftransformers.Tests.Server;

[TestFixture]
public class TuneCommandTests
{
    private string _dir = null!;

    [SetUp]
    public void MakeFolder() => _dir = Directory.CreateTempSubdirectory("ftransformers-tune-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_dir, recursive: true);

    [Test]
    public async Task Tune_StaysWithinItsTrials_AndItsFlagsAndSettingsStartAServer()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = await Program.RunAsync(["tune", "--model", "synthetic:tiny", "--trials", "3", "--number", "2", "--input-length", "8", "--output-length", "3",
            "--page-size", "8", "--output", _dir], output, error);
        Assert.That(exit, Is.Zero, error.ToString());
        string report = output.ToString();
        string[] trials = [.. report.Split('\n').Where(l => Regex.IsMatch(l, @"^\| \d+ \| `"))];
        Assert.That(trials, Has.Length.InRange(1, 3), "no more trials than the budget");
        Assert.That(trials.Count(t => t.Contains("**best**")), Is.EqualTo(1));
        Assert.That(error.ToString(), Does.Contain("trial 1/3: --cpuinfer"));

        // The printed serve line, with the pinned --page-size kept, starts a server.
        Match serve = Regex.Match(report, @"ftransformers serve (--model-path synthetic:tiny .*)");
        Assert.That(serve.Success, report);
        string[] flags = serve.Groups[1].Value.Trim().Split(' ');
        Assert.That(flags, Does.Contain("--page-size").And.Contain("--kv-cache-dtype").And.Contain("--chunked-prefill-size"));
        using var stop = new CancellationTokenSource();
        var served = new StringWriter();
        Task<int> running = Program.RunAsync(["serve", .. flags, "--port", "0"], served, new StringWriter(), stop.Token);
        DateTime deadline = DateTime.UtcNow.AddSeconds(60);
        while (!served.ToString().Contains("Serving") && !running.IsCompleted && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        Assert.That(served.ToString(), Does.Contain("Serving synthetic:tiny"));
        await stop.CancelAsync();
        Assert.That(await running, Is.Zero);

        // appsettings.json binds to the options the flags stand for.
        IConfiguration configuration = new ConfigurationBuilder().AddJsonFile(Path.Combine(_dir, "appsettings.json")).Build();
        FtransformersOptions bound = configuration.GetSection(FtransformersOptions.SectionName).Get<FtransformersOptions>()!;
        Assert.That(bound.Validate(), Is.Empty);
        Assert.That(bound.ModelPath, Is.EqualTo("synthetic:tiny"));
        Assert.That(bound.KvCachePageSize, Is.EqualTo(8));
        Assert.That(flags, Does.Contain(bound.CpuThreads!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.That(flags, Does.Contain(bound.KvCacheDType!.Value.ToString().ToLowerInvariant()));
        Assert.That(File.ReadAllText(Path.Combine(_dir, "tune.md")), Is.EqualTo(report[..report.IndexOf("wrote ", StringComparison.Ordinal)]));
    }

    [TestCase("--cpuinfer", "2", "--cpuinfer is what tune chooses")]
    [TestCase("--goal", "ttft", "--ttft-bound")]
    [TestCase("--goal", "throughput", "needs --parallel")]
    [TestCase("--trials", "0", "--trials")]
    public async Task BadFlags_AreBadInput_NamingThem(string flag, string value, string named)
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["tune", "--model", "synthetic:tiny", flag, value], new StringWriter(), error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain(named));
    }
}
