using System.CommandLine;
using Ftransformers.Generation;
using Ftransformers.Serving;
using Ftransformers.Tokenization;

namespace Ftransformers.Cli;

/// <summary>
/// <c>ftransformers chat</c>: a conversation on the terminal. Each line is a user turn; the answer streams as it is
/// generated, reasoning (<c>&lt;think&gt;</c>) dimmed. <c>/reset</c> starts over, <c>/exit</c> (or end of input) quits.
/// </summary>
internal static class ChatCommand
{
    private const string Dim = "\u001b[2m", Plain = "\u001b[0m";

    public static Command Create(Func<TextReader> input)
    {
        var model = new Option<string>("--model", "--model-path") { Description = "Checkpoint folder, or synthetic:NAME for a built-in random-weight model.", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer folder (tokenizer.json); defaults to the model folder, else a byte-level tokenizer." };
        var system = new Option<string?>("--system") { Description = "A system prompt for the whole conversation." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per answer.", DefaultValueFactory = _ => 1024 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy.", DefaultValueFactory = _ => 0.6f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass.", DefaultValueFactory = _ => 0.95f };
        var seed = new Option<int?>("--seed") { Description = "Seed for reproducible sampling." };
        var command = new Command("chat", "Chat with the model on the terminal (/reset starts over, /exit quits).") { model, tokenizer, system, maxTokens, temperature, topP, seed };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            TextReader lines = input();
            // Dimming is for a person at a terminal; piped output gets the tags as the model wrote them.
            bool terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
            using InferenceSession session = InferenceSession.Load(parse.GetRequiredValue(model), parse.GetValue(tokenizer));
            var sampling = new SamplingOptions { Temperature = parse.GetValue(temperature), TopP = parse.GetValue(topP), Seed = parse.GetValue(seed) };
            string? systemPrompt = parse.GetValue(system);
            var history = new List<ChatMessage>();
            await error.WriteLineAsync($"Chatting with {parse.GetRequiredValue(model)}. /reset starts over, /exit quits.");
            while (true)
            {
                await output.WriteAsync("> ");
                await output.FlushAsync(ct);
                string? line = await lines.ReadLineAsync(ct);
                if (line == null || line.Trim() is "/exit" or "/quit")
                    break;
                if (line.Trim() == "/reset")
                {
                    history.Clear();
                    await output.WriteLineAsync("(conversation cleared)");
                    continue;
                }
                if (line.Trim().Length == 0)
                    continue;

                history.Add(ChatMessage.User(line));
                var request = new GenerationRequest
                {
                    Messages = [.. systemPrompt != null ? [ChatMessage.System(systemPrompt)] : Array.Empty<ChatMessage>(), .. history],
                    MaxTokens = parse.GetValue(maxTokens),
                    Sampling = sampling,
                };
                string answer = await StreamAnswerAsync(session, request, output, error, terminal, ct);
                // The answer goes back into the history; the reasoning does not (DeepSeek-R1's guidance).
                history.Add(ChatMessage.Assistant(answer));
            }
            return 0;
        }));
        return command;
    }

    private static async Task<string> StreamAnswerAsync(InferenceSession session, GenerationRequest request, TextWriter output, TextWriter error, bool terminal, CancellationToken ct)
    {
        var parser = new ReasoningParser();
        var answer = new System.Text.StringBuilder();
        bool inReasoning = false;
        GenerationChunk? last = null;
        await foreach (GenerationChunk chunk in session.GenerateAsync(request, ct))
        {
            (string thought, string text) = parser.Append(chunk.Text);
            if (chunk.FinishReason != null)
            {
                (string restThought, string restText) = parser.Flush();
                thought += restThought;
                text += restText;
            }
            if (thought.Length > 0)
            {
                if (!inReasoning)
                    await output.WriteAsync(terminal ? Dim : ReasoningParser.OpenTag);
                inReasoning = true;
                await output.WriteAsync(thought);
            }
            if (text.Length > 0)
            {
                if (inReasoning)
                    await output.WriteAsync(terminal ? Plain + "\n" : ReasoningParser.CloseTag + "\n");
                inReasoning = false;
                await output.WriteAsync(text);
                answer.Append(text);
            }
            await output.FlushAsync(ct);
            last = chunk;
        }
        if (inReasoning)
            await output.WriteAsync(terminal ? Plain : ReasoningParser.CloseTag);
        await output.WriteLineAsync();
        if (last?.Usage is { } usage)
            await error.WriteLineAsync($"[{usage.CompletionTokens} tokens, {usage.CachedPromptTokens} of {usage.PromptTokens} prompt tokens cached, {usage.DecodeTokensPerSecond:F1} tok/s, finish: {last.FinishReason}]");
        return answer.ToString();
    }
}
