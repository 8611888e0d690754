using Ftransformers.Cli;
using NUnit.Framework;

namespace Ftransformers.Tests.Cli;

[TestFixture]
public class ChatCommandTests
{
    [Test]
    public async Task ATwoTurnConversation_ResetAndExit()
    {
        var input = new StringReader("Hello\nAnd again?\n/reset\n\nHi\n/exit\nnever read\n");
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = await Program.RunAsync(["chat", "--model", "synthetic:tiny", "--max-tokens", "4", "--temperature", "0", "--system", "Be brief."], input, output, error);

        Assert.That(exit, Is.Zero, error.ToString());
        Assert.That(output.ToString(), Does.StartWith("> "));
        Assert.That(output.ToString().Split("(conversation cleared)\n"), Has.Length.EqualTo(2), output.ToString());
        // One line of statistics per answer: the three questions, not the reset, the blank line or /exit.
        string[] stats = error.ToString().Split('\n').Where(l => l.StartsWith('[')).ToArray();
        Assert.That(stats, Has.Length.EqualTo(3));
        Assert.That(stats, Is.All.Contain("4 tokens"));
        Assert.That(stats[1], Does.Contain("prompt tokens cached").And.Not.Contain(" 0 of "), "the second turn reuses the first turn's prompt from the prefix cache");
    }

    [Test]
    public async Task EndOfInput_EndsTheChat()
    {
        int exit = await Program.RunAsync(["chat", "--model", "synthetic:tiny", "--max-tokens", "2"], new StringReader("Hello"), TextWriter.Null, TextWriter.Null);
        Assert.That(exit, Is.Zero);
    }
}
