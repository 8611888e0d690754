using System.Diagnostics.Metrics;
using Ftransformers.Generation;

namespace Ftransformers.Hosting;

/// <summary>
/// The engine's instruments on the <see cref="MeterName"/> meter: latencies and token counts recorded per request,
/// and the session's load (running and waiting requests, KV cache use) observed on demand.
/// </summary>
public sealed class FtransformersMetrics : IDisposable
{
    /// <summary>The meter's name, for listeners and exporters.</summary>
    public const string MeterName = "Ftransformers";

    /// <summary>Histogram of seconds from submission to the first generated token.</summary>
    public const string TimeToFirstTokenName = "ftransformers.time_to_first_token";
    /// <summary>Histogram of seconds between consecutive generated tokens of a request.</summary>
    public const string InterTokenLatencyName = "ftransformers.inter_token_latency";
    /// <summary>Histogram of seconds from submission to the last token, tagged <c>outcome</c>.</summary>
    public const string RequestDurationName = "ftransformers.request.duration";
    /// <summary>Counter of generated tokens.</summary>
    public const string GeneratedTokensName = "ftransformers.tokens.generated";
    /// <summary>Counter of prompt tokens of finished requests.</summary>
    public const string PromptTokensName = "ftransformers.tokens.prompt";
    /// <summary>Counter of prompt tokens served from the prefix cache.</summary>
    public const string CachedPromptTokensName = "ftransformers.tokens.prompt_cached";
    /// <summary>Counter of ended requests, tagged <c>outcome</c>: stop, length, cancelled, queue_full, invalid or error.</summary>
    public const string RequestsName = "ftransformers.requests";
    /// <summary>Gauge of requests being prefilled or decoded.</summary>
    public const string RunningRequestsName = "ftransformers.requests.running";
    /// <summary>Gauge of requests admitted but not running yet.</summary>
    public const string WaitingRequestsName = "ftransformers.requests.waiting";
    /// <summary>Gauge of KV cache token slots in use.</summary>
    public const string KvCacheUsedName = "ftransformers.kv_cache.tokens_used";
    /// <summary>Gauge of KV cache token slots in all (0 when the cache grows on demand).</summary>
    public const string KvCacheTotalName = "ftransformers.kv_cache.tokens_total";
    /// <summary>Gauge of the fraction of the KV cache in use; reported only for a pool of fixed size.</summary>
    public const string KvCacheUsageName = "ftransformers.kv_cache.usage";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Histogram<double> _interTokenLatency;
    private readonly Histogram<double> _requestDuration;
    private readonly Counter<long> _generatedTokens;
    private readonly Counter<long> _promptTokens;
    private readonly Counter<long> _cachedPromptTokens;
    private readonly Counter<long> _requests;
    private volatile IInferenceSession? _observed;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>, or on a meter of its own when null.</summary>
    public FtransformersMetrics(IMeterFactory? meterFactory = null)
    {
        _ownsMeter = meterFactory == null;
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _timeToFirstToken = _meter.CreateHistogram<double>(TimeToFirstTokenName, "s", "Time from submission to the first generated token.");
        _interTokenLatency = _meter.CreateHistogram<double>(InterTokenLatencyName, "s", "Time between consecutive generated tokens.");
        _requestDuration = _meter.CreateHistogram<double>(RequestDurationName, "s", "Time from submission to the end of a request.");
        _generatedTokens = _meter.CreateCounter<long>(GeneratedTokensName, "{token}", "Tokens generated.");
        _promptTokens = _meter.CreateCounter<long>(PromptTokensName, "{token}", "Prompt tokens of finished requests.");
        _cachedPromptTokens = _meter.CreateCounter<long>(CachedPromptTokensName, "{token}", "Prompt tokens whose KV came from the prefix cache.");
        _requests = _meter.CreateCounter<long>(RequestsName, "{request}", "Requests ended, by outcome.");
        _meter.CreateObservableGauge(RunningRequestsName, () => Observe(s => s.RunningRequests), "{request}", "Requests being prefilled or decoded.");
        _meter.CreateObservableGauge(WaitingRequestsName, () => Observe(s => s.WaitingRequests), "{request}", "Requests waiting to run.");
        _meter.CreateObservableGauge(KvCacheUsedName, () => Observe(s => s.KvCacheTokensUsed), "{token}", "KV cache token slots in use.");
        _meter.CreateObservableGauge(KvCacheTotalName, () => Observe(s => s.KvCacheTokensTotal), "{token}", "KV cache token slots in all (0: grows on demand).");
        _meter.CreateObservableGauge(KvCacheUsageName, ObserveUsage, null, "Fraction of the KV cache pool in use.");
    }

    /// <summary>The meter the instruments live on.</summary>
    public Meter Meter => _meter;

    /// <summary>Makes the load gauges read <paramref name="session"/>'s statistics.</summary>
    public void ObserveSession(IInferenceSession session) => _observed = session;

    private IEnumerable<Measurement<T>> Observe<T>(Func<SessionStatistics, T> read) where T : struct =>
        _observed is { } session ? [new Measurement<T>(read(session.GetStatistics()))] : [];

    private IEnumerable<Measurement<double>> ObserveUsage()
    {
        if (_observed?.GetStatistics() is not { KvCacheTokensTotal: > 0 } stats)
            return [];
        return [new Measurement<double>((double)stats.KvCacheTokensUsed / stats.KvCacheTokensTotal)];
    }

    internal void RecordTimeToFirstToken(TimeSpan elapsed) => _timeToFirstToken.Record(elapsed.TotalSeconds);

    internal void RecordInterTokenLatency(TimeSpan perToken, int tokens)
    {
        for (int i = 0; i < tokens; i++)
            _interTokenLatency.Record(perToken.TotalSeconds);
    }

    internal void RecordGeneratedTokens(int tokens) => _generatedTokens.Add(tokens);

    internal void RecordEnded(string outcome, TimeSpan duration, GenerationUsage? usage)
    {
        var tag = new KeyValuePair<string, object?>("outcome", outcome);
        _requests.Add(1, tag);
        if (usage != null)
        {
            _requestDuration.Record(duration.TotalSeconds, tag);
            _promptTokens.Add(usage.PromptTokens);
            _cachedPromptTokens.Add(usage.CachedPromptTokens);
        }
    }

    /// <summary>Disposes the meter when it was not made by a factory (a factory disposes its own).</summary>
    public void Dispose()
    {
        _observed = null;
        if (_ownsMeter)
            _meter.Dispose();
    }
}
