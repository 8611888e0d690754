using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Ftransformers.Generation;
using Ftransformers.Hosting;
using Ftransformers.Model;
using Ftransformers.Tokenization;
using Microsoft.Extensions.Logging.Abstractions;
using NUnit.Framework;

namespace Ftransformers.Tests.Hosting;

[TestFixture]
public class InstrumentedInferenceSessionTests
{
    /// <summary>A clock that moves only when told to.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Interlocked.Read(ref _ticks);
        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }

    /// <summary>Streams one token per chunk, each after <see cref="TokenTime"/> on the clock, or refuses as a full queue.</summary>
    private sealed class FakeSession : IInferenceSession
    {
        public static readonly TimeSpan TokenTime = TimeSpan.FromMilliseconds(5);
        public ManualClock Clock { get; } = new();
        public bool Full { get; set; }
        public SessionStatistics Statistics { get; set; } = new(2, 3, 100, 400);
        public DeepSeekV3Config Config => SyntheticModels.Tiny;
        public ITextTokenizer Tokenizer => ByteTokenizer.Instance;
        public SessionStatistics GetStatistics() => Statistics;
        public void Dispose() { }

        public async IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            if (Full)
                throw new QueueFullException("full");
            for (int i = 1; i <= request.MaxTokens; i++)
            {
                await Task.Yield();
                cancellationToken.ThrowIfCancellationRequested();
                Clock.Advance(TokenTime);
                bool last = i == request.MaxTokens;
                yield return new GenerationChunk("a", [20]) { FinishReason = last ? FinishReason.Length : null, Usage = last ? new GenerationUsage(12, i) { CachedPromptTokens = 5 } : null };
            }
        }
    }

    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        public List<(string Name, double Value, string? Outcome)> Measurements { get; } = [];

        public Recorder(Meter meter)
        {
            _listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter == meter) l.EnableMeasurementEvents(instrument); };
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
            _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i, v, tags));
            _listener.Start();
        }

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? outcome = null;
            foreach (var tag in tags)
                if (tag.Key == "outcome")
                    outcome = (string?)tag.Value;
            lock (Measurements)
                Measurements.Add((instrument.Name, value, outcome));
        }

        public void Observe() => _listener.RecordObservableInstruments();
        public double Sum(string name) => Measurements.Where(m => m.Name == name).Sum(m => m.Value);
        public int Count(string name) => Measurements.Count(m => m.Name == name);
        public void Dispose() => _listener.Dispose();
    }

    [Test]
    public async Task FinishedRequest_RecordsLatenciesAndTokenCounts()
    {
        using var metrics = new FtransformersMetrics();
        using var recorder = new Recorder(metrics.Meter);
        var fake = new FakeSession();
        var session = new InstrumentedInferenceSession(fake, metrics, NullLogger<InstrumentedInferenceSession>.Instance, fake.Clock);

        await foreach (GenerationChunk _ in session.GenerateAsync(GenerationRequest.FromPrompt("x", 4)))
        {
        }

        Assert.That(recorder.Count(FtransformersMetrics.TimeToFirstTokenName), Is.EqualTo(1));
        Assert.That(recorder.Sum(FtransformersMetrics.TimeToFirstTokenName), Is.EqualTo(0.005).Within(1e-12));
        Assert.That(recorder.Count(FtransformersMetrics.InterTokenLatencyName), Is.EqualTo(3));
        Assert.That(recorder.Sum(FtransformersMetrics.InterTokenLatencyName), Is.EqualTo(0.015).Within(1e-12));
        Assert.That(recorder.Sum(FtransformersMetrics.GeneratedTokensName), Is.EqualTo(4));
        Assert.That(recorder.Sum(FtransformersMetrics.PromptTokensName), Is.EqualTo(12));
        Assert.That(recorder.Sum(FtransformersMetrics.CachedPromptTokensName), Is.EqualTo(5));
        Assert.That(recorder.Measurements.Single(m => m.Name == FtransformersMetrics.RequestsName).Outcome, Is.EqualTo("length"));
        Assert.That(recorder.Count(FtransformersMetrics.RequestDurationName), Is.EqualTo(1));
        Assert.That(recorder.Sum(FtransformersMetrics.RequestDurationName), Is.EqualTo(0.020).Within(1e-12));
    }

    [Test]
    public void RefusedAndCancelledRequests_AreCountedByOutcome()
    {
        using var metrics = new FtransformersMetrics();
        using var recorder = new Recorder(metrics.Meter);
        var fake = new FakeSession { Full = true };
        var session = new InstrumentedInferenceSession(fake, metrics, NullLogger<InstrumentedInferenceSession>.Instance);

        Assert.ThrowsAsync<QueueFullException>(async () => { await foreach (GenerationChunk _ in session.GenerateAsync(GenerationRequest.FromPrompt("x", 4))) { } });
        fake.Full = false;
        using var cts = new CancellationTokenSource();
        Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (GenerationChunk _ in session.GenerateAsync(GenerationRequest.FromPrompt("x", 100), cts.Token))
                await cts.CancelAsync();
        });

        Assert.That(recorder.Measurements.Where(m => m.Name == FtransformersMetrics.RequestsName).Select(m => m.Outcome), Is.EqualTo(new[] { "queue_full", "cancelled" }));
        Assert.That(recorder.Sum(FtransformersMetrics.GeneratedTokensName), Is.EqualTo(1));
    }

    [Test]
    public void LoadGauges_ReadTheSessionsStatistics()
    {
        using var metrics = new FtransformersMetrics();
        using var recorder = new Recorder(metrics.Meter);
        _ = new InstrumentedInferenceSession(new FakeSession(), metrics, NullLogger<InstrumentedInferenceSession>.Instance);

        recorder.Observe();
        Assert.That(recorder.Sum(FtransformersMetrics.RunningRequestsName), Is.EqualTo(2));
        Assert.That(recorder.Sum(FtransformersMetrics.WaitingRequestsName), Is.EqualTo(3));
        Assert.That(recorder.Sum(FtransformersMetrics.KvCacheUsedName), Is.EqualTo(100));
        Assert.That(recorder.Sum(FtransformersMetrics.KvCacheTotalName), Is.EqualTo(400));
        Assert.That(recorder.Sum(FtransformersMetrics.KvCacheUsageName), Is.EqualTo(0.25));
    }
}
