// A Semantic Kernel app that runs its prompts on Ftransformers in-process: the session and its IChatClient come from
// dependency injection, a prompt function runs through the kernel, and a chat streams through IChatCompletionService.
// Usage: dotnet run --project samples/Ftransformers.Samples.SemanticKernel [-- MODEL]   (default: synthetic:tiny)
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
        await RunAsync(args.Length > 0 ? args[0] : "synthetic:tiny", Console.Out);
        return 0;
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
