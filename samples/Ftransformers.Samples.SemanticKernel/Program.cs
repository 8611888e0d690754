// A Semantic Kernel app that runs its prompts on Ftransformers in-process: the session and its IChatClient come from
// dependency injection, a prompt function runs through the kernel, a chat streams through IChatCompletionService, and
// a plugin's [KernelFunction] is offered to the model with FunctionChoiceBehavior.Auto(), Semantic Kernel invoking
// whatever the model calls.
// Usage: dotnet run --project samples/Ftransformers.Samples.SemanticKernel [-- MODEL]   (default: synthetic:tiny)
using System.ComponentModel;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Ftransformers.Samples.SemanticKernel;

/// <summary>The sample's steps, callable from tests.</summary>
public static class Sample
{
    /// <summary>Entry point: runs the sample on the model named by the first argument.</summary>
    public static async Task<int> Main(string[] args)
    {
        string model = args.Length > 0 ? args[0] : "synthetic:tiny";
        await RunAsync(model, Console.Out);
        await RunFunctionCallingAsync(model, Console.Out, new ForecastPlugin());
        return 0;
    }

    /// <summary>
    /// Asks a question with <paramref name="plugin"/> offered to the model; Semantic Kernel runs the calls the model
    /// makes and sends their results back. <paramref name="behavior"/> defaults to <see cref="FunctionChoiceBehavior.Auto"/>.
    /// </summary>
    public static async Task<string> RunFunctionCallingAsync(string model, TextWriter output, ForecastPlugin plugin,
        FunctionChoiceBehavior? behavior = null, CancellationToken cancellationToken = default)
    {
        IKernelBuilder builder = Kernel.CreateBuilder();
        builder.Services.AddFtransformers(options => options.ModelPath = model);
        // Semantic Kernel runs the calls the model makes through its function-invoking middleware (and its filters).
        builder.Services.AddSingleton<IChatClient>(sp => sp.GetRequiredService<Ftransformers.Generation.IInferenceSession>().AsIChatClient()
            .AsBuilder().UseKernelFunctionInvocation().Build(sp));
        builder.Plugins.AddFromObject(plugin, "forecast");
        Kernel kernel = builder.Build();

        var settings = new PromptExecutionSettings
        {
            FunctionChoiceBehavior = behavior ?? FunctionChoiceBehavior.Auto(),
            ExtensionData = new Dictionary<string, object> { ["max_tokens"] = 128, ["seed"] = 1 },
        };
        FunctionResult result = await kernel.InvokePromptAsync("Will it rain in Oslo in the next three days?", new KernelArguments(settings), cancellationToken: cancellationToken);
        string answer = result.GetValue<string>() ?? "";
        await output.WriteLineAsync($"function calling ({plugin.Calls} call(s)): {answer}");
        return answer;
    }

    /// <summary>Builds a kernel over <paramref name="model"/>, invokes a prompt function and streams a chat turn; returns the prompt function's answer.</summary>
    public static async Task<string> RunAsync(string model, TextWriter output, CancellationToken cancellationToken = default)
    {
        IKernelBuilder builder = Kernel.CreateBuilder();
        builder.Services.AddFtransformers(options => options.ModelPath = model);
        builder.Services.AddFtransformersChatClient();
        Kernel kernel = builder.Build();

        // A prompt function: Semantic Kernel renders the template and sends it to the registered IChatClient.
        var settings = new PromptExecutionSettings { ExtensionData = new Dictionary<string, object> { ["max_tokens"] = 24, ["temperature"] = 0.0 } };
        FunctionResult result = await kernel.InvokePromptAsync("In one sentence, what is a {{$topic}}?",
            new KernelArguments(settings) { ["topic"] = "mixture-of-experts model" }, cancellationToken: cancellationToken);
        string answer = result.GetValue<string>() ?? "";
        await output.WriteLineAsync($"prompt function: {answer}");

        // A chat turn streamed through Semantic Kernel's chat completion service over the same client.
        IChatCompletionService chat = kernel.GetRequiredService<IChatClient>().AsChatCompletionService(kernel.Services);
        var history = new ChatHistory("You are a concise assistant.");
        history.AddUserMessage("Name three uses of a KV cache.");
        await output.WriteAsync("chat: ");
        await foreach (StreamingChatMessageContent update in chat.GetStreamingChatMessageContentsAsync(history, settings, kernel, cancellationToken))
            await output.WriteAsync(update.Content);
        await output.WriteLineAsync();
        return answer;
    }
}

/// <summary>A plugin the model may call; it counts its calls.</summary>
public sealed class ForecastPlugin
{
    private int _calls;

    /// <summary>How many times the model's calls reached the plugin.</summary>
    public int Calls => Volatile.Read(ref _calls);

    /// <summary>The days asked about, in call order.</summary>
    public List<int> Days { get; } = [];

    /// <summary>The forecast for the next <paramref name="days"/> days.</summary>
    [KernelFunction("get_forecast"), Description("The weather forecast for the next few days.")]
    public string GetForecast([Description("How many days ahead")] int days)
    {
        Interlocked.Increment(ref _calls);
        lock (Days)
            Days.Add(days);
        return $"Rain on {Math.Clamp(days, 0, 3)} of the next {days} days.";
    }
}
