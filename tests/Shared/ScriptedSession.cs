using System.Runtime.CompilerServices;
using Ftransformers.Generation;
using Ftransformers.Model;
using Ftransformers.Tokenization;

namespace Ftransformers.Tests.Shared;

/// <summary>
/// A session for host tests: replays scripted text pieces, refuses requests as a full queue would, or streams
/// without end until cancelled; with an inner session, requests no script applies to go to it.
/// </summary>
internal sealed class ScriptedSession(IInferenceSession? inner = null) : IInferenceSession
{
    private int _refuse, _endless, _running, _requests;

    /// <summary>Text pieces each request replays, one token per piece; null hands requests to the inner session.</summary>
    public IReadOnlyList<string>? Script { get; set; }

    /// <summary>How scripted requests end.</summary>
    public FinishReason Finish { get; set; } = FinishReason.Stop;

    /// <summary>Reported as prompt tokens of scripted requests.</summary>
    public int PromptTokens { get; set; } = 12;

    /// <summary>Reported as cached prompt tokens of scripted requests.</summary>
    public int CachedPromptTokens { get; set; }

    /// <summary>Requests received so far.</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary>The last request received.</summary>
    public GenerationRequest? LastRequest { get; private set; }

    /// <summary>Completes when an endless request is stopped: its cancellation fires or its consumer stops reading.</summary>
    public TaskCompletionSource EndlessStopped { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when an endless request has produced its first token.</summary>
    public TaskCompletionSource EndlessStarted { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The next <paramref name="count"/> requests throw <see cref="QueueFullException"/>.</summary>
    public void RefuseNext(int count = 1) => Volatile.Write(ref _refuse, count);

    /// <summary>The next request streams a token every few milliseconds until it is cancelled.</summary>
    public void NextIsEndless()
    {
        EndlessStopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
        EndlessStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _endless, 1);
    }

    public DeepSeekV3Config Config => inner?.Config ?? SyntheticModels.Tiny;

    public ITextTokenizer Tokenizer => inner?.Tokenizer ?? ByteTokenizer.Instance;

    public SessionStatistics GetStatistics() => new(Volatile.Read(ref _running), 0, 0, 0);

    public IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        LastRequest = request;
        Interlocked.Increment(ref _requests);
        if (Interlocked.Decrement(ref _refuse) >= 0)
            return Refuse();
        Interlocked.Exchange(ref _refuse, 0);
        if (Interlocked.Exchange(ref _endless, 0) == 1)
            return Endless(cancellationToken);
        if (Script == null && inner != null)
            return inner.GenerateAsync(request, cancellationToken);
        return Replay(request, cancellationToken);
    }

    private static async IAsyncEnumerable<GenerationChunk> Refuse()
    {
        await Task.Yield();
        throw new QueueFullException("The waiting queue is full (test).");
#pragma warning disable CS0162 // an iterator needs a yield
        yield break;
#pragma warning restore CS0162
    }

    private async IAsyncEnumerable<GenerationChunk> Replay(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        request.Validate();
        IReadOnlyList<string> script = Script ?? ["Hello", " world"];
        Interlocked.Increment(ref _running);
        try
        {
            for (int i = 0; i < script.Count; i++)
            {
                await Task.Yield();
                cancellationToken.ThrowIfCancellationRequested();
                bool last = i == script.Count - 1;
                yield return new GenerationChunk(script[i], [100 + i])
                {
                    FinishReason = last ? Finish : null,
                    Usage = last ? new GenerationUsage(PromptTokens, script.Count) { CachedPromptTokens = CachedPromptTokens } : null,
                };
            }
        }
        finally
        {
            Interlocked.Decrement(ref _running);
        }
    }

    private async IAsyncEnumerable<GenerationChunk> Endless([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _running);
        try
        {
            // Bounded: ten minutes of tokens at most, though the test cancels within seconds.
            for (int i = 0; i < 60_000; i++)
            {
                await Task.Delay(10, cancellationToken);
                EndlessStarted.TrySetResult();
                yield return new GenerationChunk("x", [200]);
            }
        }
        finally
        {
            // Cancelled, or the consumer stopped reading (a server whose write to a gone client failed disposes the
            // stream before the abort token fires): the real session cancels the sequence in both cases.
            Interlocked.Decrement(ref _running);
            EndlessStopped.TrySetResult(); // after the count drops, so a test that awaits it sees nothing running
        }
    }

    public void Dispose() => inner?.Dispose();
}
