using Ftransformers.Samples.SemanticKernel;
using NUnit.Framework;

namespace Ftransformers.Tests.Extensions.AI;

[TestFixture]
public class SemanticKernelSampleTests
{
    [Test]
    public async Task Sample_RunsAPromptFunctionAndAStreamedChat_OnTheSyntheticModel()
    {
        var output = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        string answer = await Sample.RunAsync("synthetic:tiny", output, timeout.Token);

        // Greedy decoding on the synthetic model is deterministic: a non-empty answer came from the engine.
        Assert.That(answer, Is.Not.Empty);
        Assert.That(output.ToString(), Does.StartWith($"prompt function: {answer}\n"));
        Assert.That(output.ToString(), Does.Contain("\nchat: "));
    }
}
