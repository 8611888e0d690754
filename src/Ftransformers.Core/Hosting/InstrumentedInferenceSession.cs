using System.Runtime.CompilerServices;
using Ftransformers.Generation;
using Ftransformers.Model;
using Ftransformers.Tokenization;
using Microsoft.Extensions.Logging;

namespace Ftransformers.Hosting;

/// <summary>
/// Wraps a session to log each request and record its latencies and token counts on <see cref="FtransformersMetrics"/>,
/// timing the chunk stream as the caller sees it. This is what <c>AddFtransformers</c> registers as the session.
/// </summary>
public sealed partial class InstrumentedInferenceSession : IInferenceSession
{
    private readonly IInferenceSession _inner;
    private readonly FtransformersMetrics _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private long _nextRequestId;

    /// <summary>Wraps <paramref name="inner"/> (owned: disposed with this session) and points the load gauges at it.</summary>
    /// <param name="inner">The session to wrap.</param>
    /// <param name="metrics">Where latencies and counts are recorded.</param>
    /// <param name="logger">Where requests are logged.</param>
    /// <param name="time">The clock latencies are read from (the system's when null).</param>
    public InstrumentedInferenceSession(IInferenceSession inner, FtransformersMetrics metrics, ILogger<InstrumentedInferenceSession> logger, TimeProvider? time = null)
    {
        _inner = inner;
        _metrics = metrics;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        metrics.ObserveSession(inner);
    }

    /// <summary>The wrapped session.</summary>
    public IInferenceSession Inner => _inner;

    /// <inheritdoc/>
    public DeepSeekV3Config Config => _inner.Config;

    /// <inheritdoc/>
    public ITextTokenizer Tokenizer => _inner.Tokenizer;

    /// <inheritdoc/>
    public SessionStatistics GetStatistics() => _inner.GetStatistics();

    /// <inheritdoc/>
    public async IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        long id = Interlocked.Increment(ref _nextRequestId);
        long start = _time.GetTimestamp();
        long previous = start;
        bool first = true;
        string? outcome = null;
        GenerationUsage? usage = null;
        LogStarted(id, request.MaxTokens);
        IAsyncEnumerator<GenerationChunk>? chunks = null;
        try
        {
            while (true)
            {
                GenerationChunk chunk;
                try
                {
                    chunks ??= _inner.GenerateAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
                    if (!await chunks.MoveNextAsync().ConfigureAwait(false))
                        break;
                    chunk = chunks.Current;
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    outcome = "cancelled";
                    LogCancelled(id, _time.GetElapsedTime(start).TotalMilliseconds);
                    throw;
                }
                catch (QueueFullException e)
                {
                    outcome = "queue_full";
                    LogQueueFull(id, e.Message);
                    throw;
                }
                catch (ArgumentException e)
                {
                    outcome = "invalid";
                    LogInvalid(id, e.Message);
                    throw;
                }
                catch (Exception e)
                {
                    outcome = "error";
                    LogFailed(id, e);
                    throw;
                }

                long now = _time.GetTimestamp();
                int tokens = chunk.TokenIds.Count;
                if (tokens > 0)
                {
                    if (first)
                    {
                        _metrics.RecordTimeToFirstToken(_time.GetElapsedTime(start, now));
                        if (tokens > 1)
                            _metrics.RecordInterTokenLatency(TimeSpan.Zero, tokens - 1);
                        first = false;
                    }
                    else
                    {
                        _metrics.RecordInterTokenLatency(_time.GetElapsedTime(previous, now) / tokens, tokens);
                    }
                    _metrics.RecordGeneratedTokens(tokens);
                    previous = now;
                }
                if (chunk.FinishReason is { } reason)
                {
                    outcome = reason == FinishReason.Stop ? "stop" : "length";
                    usage = chunk.Usage;
                }
                yield return chunk;
            }
        }
        finally
        {
            // A caller that stops reading before the last chunk abandoned the request: count it as cancelled.
            outcome ??= "cancelled";
            TimeSpan elapsed = _time.GetElapsedTime(start);
            _metrics.RecordEnded(outcome, elapsed, usage);
            if (usage != null)
                LogFinished(id, outcome, usage.PromptTokens, usage.CachedPromptTokens, usage.CompletionTokens, elapsed.TotalMilliseconds);
            if (chunks != null)
                await chunks.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Disposes the wrapped session.</summary>
    public void Dispose() => _inner.Dispose();

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "Request {RequestId} submitted (max {MaxTokens} tokens)")]
    private partial void LogStarted(long requestId, int maxTokens);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information,
        Message = "Request {RequestId} finished ({Outcome}): {PromptTokens} prompt tokens ({CachedTokens} cached), {CompletionTokens} generated in {ElapsedMs:F0} ms")]
    private partial void LogFinished(long requestId, string outcome, int promptTokens, int cachedTokens, int completionTokens, double elapsedMs);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Request {RequestId} cancelled after {ElapsedMs:F0} ms")]
    private partial void LogCancelled(long requestId, double elapsedMs);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Request {RequestId} refused: {Reason}")]
    private partial void LogQueueFull(long requestId, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "Request {RequestId} rejected: {Reason}")]
    private partial void LogInvalid(long requestId, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "Request {RequestId} failed")]
    private partial void LogFailed(long requestId, Exception exception);
}
