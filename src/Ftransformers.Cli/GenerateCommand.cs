using System.CommandLine;
using System.Diagnostics;
using Ftransformers.Generation;
using Ftransformers.Tokenization;
using Ftransformers.Serving;

namespace Ftransformers.Cli;

/// <summary><c>ftransformers generate</c>: streams a completion of one prompt to stdout.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder, or synthetic:tiny for a built-in random-weight model.", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "The prompt text.", Required = true };
        var chat = new Option<bool>("--chat") { Description = "Send the prompt as a user message in the DeepSeek chat format." };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer folder (tokenizer.json); defaults to the model folder, else a byte-level tokenizer." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens to generate.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy.", DefaultValueFactory = _ => 0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass.", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = off)." };
        var minP = new Option<float>("--min-p") { Description = "Drop tokens below this fraction of the top probability." };
        var seed = new Option<int?>("--seed") { Description = "Seed for reproducible sampling." };
        var stop = new Option<string[]>("--stop") { Description = "A stop string (repeatable).", AllowMultipleArgumentsPerToken = false };
        var command = new Command("generate", "Generate text from a prompt.") { model, prompt, chat, tokenizer, maxTokens, temperature, topP, topK, minP, seed, stop };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            using InferenceSession session = InferenceSession.Load(parse.GetRequiredValue(model), parse.GetValue(tokenizer));
            string text = parse.GetRequiredValue(prompt);
            var request = new GenerationRequest
            {
                Prompt = parse.GetValue(chat) ? null : text,
                Messages = parse.GetValue(chat) ? [ChatMessage.User(text)] : null,
                MaxTokens = parse.GetValue(maxTokens),
                Stop = parse.GetValue(stop) ?? [],
                Sampling = new SamplingOptions
                {
                    Temperature = parse.GetValue(temperature),
                    TopP = parse.GetValue(topP),
                    TopK = parse.GetValue(topK),
                    MinP = parse.GetValue(minP),
                    Seed = parse.GetValue(seed),
                },
            };
            var clock = Stopwatch.StartNew();
            TimeSpan? firstToken = null;
            GenerationChunk? last = null;
            await foreach (GenerationChunk chunk in session.GenerateAsync(request, ct))
            {
                firstToken ??= clock.Elapsed;
                await output.WriteAsync(chunk.Text);
                await output.FlushAsync(ct);
                last = chunk;
            }
            await output.WriteLineAsync();
            GenerationUsage usage = last!.Usage!;
            double decodeSeconds = (clock.Elapsed - firstToken!.Value).TotalSeconds;
            await error.WriteLineAsync($"[{usage.PromptTokens} prompt tokens, {usage.CompletionTokens} generated, finish: {last.FinishReason}, " +
                $"first token {firstToken.Value.TotalMilliseconds:F0} ms, {(usage.CompletionTokens > 1 ? (usage.CompletionTokens - 1) / decodeSeconds : 0):F1} tok/s decode]");
            return 0;
        }));
        return command;
    }
}
