using System.CommandLine;
using Ftransformers.Cli;
using Ftransformers.Tests.Support;
using NUnit.Framework;

namespace Ftransformers.Tests.Tokenization;

[TestFixture]
public class VerifyTokenizerCommandTests : TempDirectoryTest
{
    private static (int ExitCode, string Output, string Error) Invoke(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exitCode = VerifyTokenizerCommand.Create().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exitCode, output.ToString(), error.ToString());
    }

    [Test]
    public void JsonModePrintsExactlyOneObjectAndExitsZeroOnPass()
    {
        (int exitCode, string output, string error) = Invoke("--tokenizer", Fixtures.Tokenizer, "--golden", GoldenEncodings.FilePath, "--json");

        Assert.That(exitCode, Is.EqualTo(0));
        Assert.That(output, Is.EqualTo("""{"cases":12,"mismatches":0,"chat_template_match":true,"pass":true}""" + Environment.NewLine));
        Assert.That(error, Is.Empty);
    }

    [Test]
    public void TableModeEndsWithASummary()
    {
        (int exitCode, string output, _) = Invoke("--tokenizer", Fixtures.Tokenizer, "--golden", GoldenEncodings.FilePath);

        Assert.That(exitCode, Is.EqualTo(0));
        Assert.That(output, Does.Not.Contain("MISMATCH"));
        Assert.That(output, Does.Contain("cases          12").And.Contain("result         PASS"));
    }

    [Test]
    public void AMismatchPrintsALinePerMismatchAndExitsOne()
    {
        string golden = TokenizerVerifierTests.WriteAlteredGolden(TempPath, g => g["cases"]![3]!["ids"]![0] = 1);

        (int exitCode, string output, _) = Invoke("--tokenizer", Fixtures.Tokenizer, "--golden", golden);

        Assert.That(exitCode, Is.EqualTo(1));
        Assert.That(output.Split('\n').Count(line => line.StartsWith("MISMATCH  case 3", StringComparison.Ordinal)), Is.EqualTo(2), "ids and decode");
        Assert.That(output, Does.Contain("result         FAIL"));
    }

    [Test]
    public void AMissingGoldenFileExitsTwoWithTheErrorOnStandardError()
    {
        string missing = Path.Combine(TempPath, "missing.json");

        (int exitCode, string output, string error) = Invoke("--tokenizer", Fixtures.Tokenizer, "--golden", missing, "--json");

        Assert.That(exitCode, Is.EqualTo(2));
        Assert.That(output, Is.Empty);
        Assert.That(error, Does.Contain(missing));
    }

    [Test]
    public void AMissingTokenizerFolderExitsTwo()
    {
        string missing = Path.Combine(TempPath, "no-tokenizer");

        (int exitCode, _, string error) = Invoke("--tokenizer", missing, "--golden", GoldenEncodings.FilePath);

        Assert.That(exitCode, Is.EqualTo(2));
        Assert.That(error, Does.Contain(Path.Combine(missing, "tokenizer.json")));
    }

    // A missing option is a parse error handled by System.CommandLine itself (its exit code is 1 unless
    // the root command maps parse errors), before the command's action runs.
    [Test]
    public void AMissingRequiredOptionIsReportedAndFails()
    {
        (int exitCode, _, string error) = Invoke("--tokenizer", Fixtures.Tokenizer);

        Assert.That(exitCode, Is.Not.EqualTo(0));
        Assert.That(error, Does.Contain("--golden"));
    }
}
