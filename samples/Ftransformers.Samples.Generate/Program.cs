// Streams a chat completion from a model folder given as the first argument (default: the synthetic model).
using Ftransformers.Generation;
using Ftransformers.Tokenization;
using Ftransformers.Serving;

string model = args.Length > 0 ? args[0] : "synthetic:tiny";
using var session = InferenceSession.Load(model);
var request = GenerationRequest.FromMessages([ChatMessage.User("Tell me about mixture-of-experts models.")], maxTokens: 48)
    with { Sampling = new SamplingOptions { Temperature = 0.7f, Seed = 1 } };

await foreach (GenerationChunk chunk in session.GenerateAsync(request))
{
    Console.Write(chunk.Text);
    if (chunk.Usage is { } usage)
        Console.WriteLine($"\n[{chunk.FinishReason}: {usage.PromptTokens} prompt + {usage.CompletionTokens} generated tokens]");
}
