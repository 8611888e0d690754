using System.Diagnostics;
using Ftransformers.Generation;
using Ftransformers.Hosting;
using Ftransformers.Model;
using Ftransformers.Tokenization;
using Microsoft.Extensions.DependencyInjection;
using Ftransformers.Inference;

namespace Ftransformers.Cli.Bench;

/// <summary>The session in this process, loaded through <c>AddFtransformers</c> as the server loads it.</summary>
internal sealed class InProcessTarget : IBenchTarget
{
    private readonly ServiceProvider _services;
    private readonly IInferenceSession _session;

    public InProcessTarget(FtransformersOptions options)
    {
        var services = new ServiceCollection();
        services.AddFtransformers(o =>
        {
            ServeCommand.Copy(options, o);
            o.Profile = Profile;
        });
        _services = services.BuildServiceProvider();
        try
        {
            _session = _services.GetRequiredService<IInferenceSession>();
        }
        catch
        {
            _services.Dispose();
            throw;
        }
        Model = options.ModelPath;
        Preset = options.Precision ?? "auto (checkpoint dtype)";
    }

    public string Description => "in-process";
    public string Model { get; }
    public string? Preset { get; }
    public ForwardProfile Profile { get; } = new();

    public Task<Func<string, int>> TokenCounterAsync(CancellationToken cancellationToken)
    {
        ITextTokenizer tokenizer = _session.Tokenizer;
        return Task.FromResult<Func<string, int>>(text => tokenizer.Encode(text).Count);
    }

    public async Task<RequestResult> SendAsync(BenchPrompt prompt, BenchWorkload workload, CancellationToken cancellationToken, Action<int>? onTokens = null)
    {
        var request = new GenerationRequest
        {
            Messages = workload.Api == BenchApi.Chat ? prompt.ChatMessages() : null,
            Prompt = workload.Api == BenchApi.Completions ? prompt.SharedPrefix + prompt.Text : null,
            MaxTokens = prompt.MaxTokens ?? workload.Output.Min,
            IgnoreEos = workload.IgnoreEos,
            Sampling = new SamplingOptions { Temperature = (float)workload.Temperature, Seed = workload.Seed },
        };
        long start = Stopwatch.GetTimestamp();
        double? firstToken = null;
        double previous = 0;
        var gaps = new List<double>();
        try
        {
            await foreach (GenerationChunk chunk in _session.GenerateAsync(request, cancellationToken))
            {
                double now = Stopwatch.GetElapsedTime(start).TotalSeconds;
                int tokens = chunk.TokenIds.Count;
                if (tokens > 0)
                {
                    onTokens?.Invoke(tokens);
                    if (firstToken == null)
                        firstToken = now;
                    else
                        gaps.AddRange(Enumerable.Repeat((now - previous) / tokens, tokens));
                    previous = now;
                }
                if (chunk.Usage is { } usage)
                {
                    return new RequestResult
                    {
                        PromptTokens = usage.PromptTokens,
                        CachedPromptTokens = usage.CachedPromptTokens,
                        CompletionTokens = usage.CompletionTokens,
                        TimeToFirstToken = firstToken ?? now,
                        Latency = now,
                        InterTokenLatencies = gaps,
                    };
                }
            }
            return RequestResult.Failed("The stream ended without usage.", Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return RequestResult.Failed($"{e.GetType().Name}: {e.Message}", Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
    }

    public ValueTask DisposeAsync() => _services.DisposeAsync();
}
