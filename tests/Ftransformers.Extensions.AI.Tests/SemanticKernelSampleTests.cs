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

    [Test]
    public async Task FunctionCallingSample_InvokesThePlugin_WhenTheModelMustCallIt()
    {
        // synthetic:tiny has random weights, so under Auto it almost never chooses a call; Required makes the grammar
        // force one, and Semantic Kernel must then run the plugin and send its result back.
        var plugin = new ForecastPlugin();
        var output = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await Sample.RunFunctionCallingAsync("synthetic:tiny", output, plugin, Microsoft.SemanticKernel.FunctionChoiceBehavior.Required(), timeout.Token);
        Assert.That(plugin.Calls, Is.GreaterThanOrEqualTo(1), output.ToString());
        Assert.That(output.ToString(), Does.StartWith($"function calling ({plugin.Calls} call(s)): "));
    }

    [Test]
    public async Task FunctionCallingSample_RunsUnderAuto()
    {
        var plugin = new ForecastPlugin();
        var output = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await Sample.RunFunctionCallingAsync("synthetic:tiny", output, plugin, cancellationToken: timeout.Token);
        Assert.That(output.ToString(), Does.StartWith($"function calling ({plugin.Calls} call(s)): "));
    }
}
