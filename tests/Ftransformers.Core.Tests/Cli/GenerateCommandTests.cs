using Ftransformers.Cli;
using NUnit.Framework;

namespace Ftransformers.Tests.Cli;

[TestFixture]
public class GenerateCommandTests
{
    [Test]
    public async Task SyntheticModel_StreamsTheRequestedNumberOfTokens()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = await Program.RunAsync(["generate", "--model", "synthetic:tiny", "--prompt", "Hello", "--max-tokens", "5", "--seed", "3", "--temperature", "0.8"], output, error);
        Assert.That(exit, Is.Zero, error.ToString());
        Assert.That(error.ToString(), Does.Contain("6 prompt tokens, 5 generated, finish: Length"));
    }

    [Test]
    public async Task SameSeed_PrintsTheSameText()
    {
        async Task<string> Run()
        {
            var output = new StringWriter();
            await Program.RunAsync(["generate", "--model", "synthetic:tiny", "--prompt", "Hi", "--max-tokens", "12", "--seed", "9", "--temperature", "1"], output, TextWriter.Null);
            return output.ToString();
        }
        Assert.That(await Run(), Is.EqualTo(await Run()));
    }

    [Test]
    public async Task UnknownSyntheticModel_ListsTheKnownOnes()
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["generate", "--model", "synthetic:huge", "--prompt", "x"], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("'huge'").And.Contain("tiny"));
    }

    [Test]
    public async Task MissingRequiredOption_IsBadInput()
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["verify", "--golden", "x"], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("--model"));
    }

    [Test]
    public async Task InvalidSamplingOption_IsBadInput()
    {
        var error = new StringWriter();
        int exit = await Program.RunAsync(["generate", "--model", "synthetic:tiny", "--prompt", "x", "--top-p", "0"], TextWriter.Null, error);
        Assert.That(exit, Is.EqualTo(Program.ExitBadInput));
        Assert.That(error.ToString(), Does.Contain("top_p"));
    }
}
