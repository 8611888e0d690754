using System.Diagnostics;
using Ftransformers.Backends;

namespace Ftransformers.Inference;

/// <summary>
/// Times the parts of one step at a time and hands each to whoever listens: the <see cref="ForwardProfile"/>, the
/// <see cref="FtransformersEventSource"/> and <see cref="ActivitySource"/> <c>Ftransformers</c> (spans
/// <c>ftransformers.step</c> with a child <c>ftransformers.part</c> per part). With none of them, a step costs two
/// flag checks, each part one, and nothing is allocated. Used from the engine thread only.
/// </summary>
internal sealed class StepTrace(ForwardProfile? profile)
{
    /// <summary>The engine's activity source.</summary>
    public static readonly ActivitySource Source = new("Ftransformers");

    private bool _events, _spans;
    private StepKind _kind;
    private long _start, _mark;
    private DateTime _wallStart;
    private Activity? _step;

    /// <summary>Whether a step is being traced: someone listens and <see cref="Begin"/> was called.</summary>
    public bool Active { get; private set; }

    /// <summary>Whether a step has begun (traced or not) and not ended.</summary>
    public bool InStep { get; private set; }

    /// <summary>Starts a step of <paramref name="kind"/> begun at <paramref name="start"/> (a <see cref="Stopwatch"/> timestamp; 0: now).</summary>
    public void Begin(StepKind kind, long start = 0)
    {
        InStep = true;
        _events = FtransformersEventSource.Log.IsEnabled();
        _spans = Source.HasListeners();
        Active = profile != null || _events || _spans;
        if (!Active)
            return;
        _kind = kind;
        _start = _mark = start != 0 ? start : Stopwatch.GetTimestamp();
        if (_spans)
        {
            _wallStart = DateTime.UtcNow - Stopwatch.GetElapsedTime(_start);
            _step = Source.StartActivity("ftransformers.step", ActivityKind.Internal, default(ActivityContext), startTime: _wallStart);
            _step?.SetTag("ftransformers.step.kind", kind.ToString());
        }
    }

    /// <summary>Records <paramref name="part"/> as the time since the previous lap (or the step's start).</summary>
    public void Lap(int layer, ModelPart part, PartWeights weights = default, long cacheBytes = 0, long multiplyAdds = 0)
    {
        if (!Active)
            return;
        long now = Stopwatch.GetTimestamp();
        Record(layer, part, _mark, now, weights.Bytes, cacheBytes, multiplyAdds);
        _mark = now;
    }

    /// <summary>Records a part that ran from <paramref name="start"/> to <paramref name="end"/> inside the current lap, without ending the lap.</summary>
    public void Nested(long start, long end, int layer, ModelPart part, PartWeights weights = default, long multiplyAdds = 0)
    {
        if (Active)
            Record(layer, part, start, end, weights.Bytes, 0, multiplyAdds);
    }

    /// <summary>Ends the step: <paramref name="tokens"/> tokens of <paramref name="sequences"/> sequences.</summary>
    public void End(int tokens, int sequences)
    {
        InStep = false;
        if (!Active)
            return;
        Active = false;
        profile?.AddStep(_kind, tokens, sequences);
        double microseconds = Stopwatch.GetElapsedTime(_start).TotalMicroseconds;
        if (_events)
            FtransformersEventSource.Log.Step(_kind, tokens, sequences, microseconds);
        if (_step != null)
        {
            _step.SetTag("ftransformers.step.tokens", tokens);
            _step.SetTag("ftransformers.step.sequences", sequences);
            _step.Stop();
            _step = null;
        }
    }

    private void Record(int layer, ModelPart part, long start, long end, long weightBytes, long cacheBytes, long multiplyAdds)
    {
        profile?.Add(_kind, layer, part, end - start, weightBytes, cacheBytes, multiplyAdds);
        if (_events)
            FtransformersEventSource.Log.Part(_kind, layer, part, Stopwatch.GetElapsedTime(start, end).TotalMicroseconds, weightBytes, cacheBytes);
        if (_spans && Source.StartActivity("ftransformers.part", ActivityKind.Internal, _step?.Context ?? default, startTime: Wall(start)) is { } span)
        {
            span.SetTag("ftransformers.part", part.ToString());
            span.SetTag("ftransformers.layer", layer);
            span.SetTag("ftransformers.bytes", weightBytes + cacheBytes);
            span.SetEndTime(Wall(end));
            span.Stop();
        }
    }

    private DateTime Wall(long timestamp) => _wallStart + Stopwatch.GetElapsedTime(_start, timestamp);
}
