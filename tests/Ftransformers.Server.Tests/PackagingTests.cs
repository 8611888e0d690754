using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Xml.Linq;
using Ftransformers.Generation;
using NUnit.Framework;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Server;

/// <summary>
/// Packs the four published packages as a release would, checks what each carries, then installs the tool from the
/// local packages into a temporary tool path and runs it as a user would.
/// </summary>
[TestFixture]
public class PackagingTests
{
    private static readonly string[] Packages = ["Ftransformers.Core", "Ftransformers.Extensions.AI", "Ftransformers.Server", "Ftransformers.Cli"];
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(10);

    private string _dir = null!;

    [SetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("ftransformers-pack-").FullName;

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public async Task Packages_CarryTheirMetadataAndSymbols_AndTheToolInstallsFromThemAndRuns()
    {
        string root = RepositoryRoot(), feed = Path.Combine(_dir, "feed"), tools = Path.Combine(_dir, "tools");
        // The packages' version is the libraries' own (their informational version without the commit).
        string version = typeof(InferenceSession).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];

        foreach (string package in Packages)
        {
            var (exit, output) = await Dotnet(root, "pack", Path.Combine("src", package), "-c", "Release", "-o", feed, "-p:ContinuousIntegrationBuild=true", "-nodeReuse:false");
            Assert.That(exit, Is.Zero, output);
            string nupkg = Path.Combine(feed, $"{package}.{version}.nupkg");
            Assert.That(File.Exists(Path.Combine(feed, $"{package}.{version}.snupkg")), $"{package}: symbols package\n{output}");

            using ZipArchive archive = ZipFile.OpenRead(nupkg);
            XElement metadata = XDocument.Load(archive.GetEntry($"{package}.nuspec")!.Open()).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
            string Field(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
            Assert.That(Field("id"), Is.EqualTo(package));
            Assert.That(Field("version"), Is.EqualTo(version));
            Assert.That(Field("authors"), Is.Not.Empty, package);
            Assert.That(Field("license"), Is.EqualTo("MIT"), package);
            Assert.That(Field("description"), Does.Contain(" "), package);
            Assert.That(Field("tags"), Does.Contain("deepseek"), package);
            Assert.That(Field("readme"), Is.EqualTo("README.md"), package);
            Assert.That(archive.GetEntry("README.md"), Is.Not.Null, $"{package}: the package README");
        }

        var (installed, installOutput) = await Dotnet(_dir, "tool", "install", "Ftransformers.Cli", "--tool-path", tools, "--add-source", feed, "--version", version);
        Assert.That(installed, Is.Zero, installOutput);
        string tool = Path.Combine(tools, OperatingSystem.IsWindows() ? "ftransformers.exe" : "ftransformers");

        var (versionExit, versionOutput) = await Run(tool, _dir, "--version");
        Assert.That(versionExit, Is.Zero, versionOutput);
        Assert.That(versionOutput.Trim(), Does.StartWith(version));

        var (generateExit, generateOutput) = await Run(tool, _dir, "generate", "--model", "synthetic:tiny", "--prompt", "Hello", "--max-tokens", "4", "--temperature", "0");
        Assert.That(generateExit, Is.Zero, generateOutput);
        Assert.That(generateOutput, Does.Contain("4 generated, finish: Length"), "the summary on stderr counts the generated tokens");
    }

    private static Task<(int Exit, string Output)> Dotnet(string workingDirectory, params string[] args) => Run("dotnet", workingDirectory, args);

    // Runs a program to its end (one generous deadline, for liveness only), with stdout and stderr together.
    private static async Task<(int Exit, string Output)> Run(string program, string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(Deadline);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{program} {string.Join(' ', args)} did not finish within {Deadline}.");
        }
        return (process.ExitCode, $"{await stdout}\n{await stderr}");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ftransformers.Core.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"Could not find the repository root (Ftransformers.Core.sln) above '{AppContext.BaseDirectory}'.");
    }
}
