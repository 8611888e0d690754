using System.Diagnostics.Tracing;
using Ftransformers.Backends;

namespace Ftransformers.Inference;

/// <summary>
/// The engine's steps and their parts as <c>EventSource</c> events, for <c>dotnet-trace</c> and EventListeners:
/// provider <c>Ftransformers</c>, event <c>Step</c> (Informational) per step and <c>Part</c> (Verbose) per layer part.
/// Nothing is written, or computed, unless a listener enables the provider.
/// </summary>
[EventSource(Name = "Ftransformers")]
public sealed class FtransformersEventSource : EventSource
{
    /// <summary>The one instance.</summary>
    public static readonly FtransformersEventSource Log = new();

    /// <summary>Event ids.</summary>
    public const int StepEventId = 1, PartEventId = 2;

    private FtransformersEventSource()
    {
    }

    /// <summary>A step ended: its kind, tokens, sequences and wall time.</summary>
    [Event(StepEventId, Level = EventLevel.Informational, Message = "{0} step: {1} tokens of {2} sequences in {3} us")]
    public unsafe void Step(StepKind kind, int tokens, int sequences, double microseconds)
    {
        if (!IsEnabled(EventLevel.Informational, EventKeywords.All))
            return;
        int k = (int)kind;
        EventData* data = stackalloc EventData[4];
        data[0] = new EventData { DataPointer = (nint)(&k), Size = sizeof(int) };
        data[1] = new EventData { DataPointer = (nint)(&tokens), Size = sizeof(int) };
        data[2] = new EventData { DataPointer = (nint)(&sequences), Size = sizeof(int) };
        data[3] = new EventData { DataPointer = (nint)(&microseconds), Size = sizeof(double) };
        WriteEventCore(StepEventId, 4, data);
    }

    /// <summary>A part of a step ended: the layer (-1 outside layers), the part, its wall time and the bytes it read.</summary>
    [Event(PartEventId, Level = EventLevel.Verbose, Message = "layer {1} {2}: {3} us, {4} weight bytes, {5} cache bytes")]
    public unsafe void Part(StepKind kind, int layer, ModelPart part, double microseconds, long weightBytes, long cacheBytes)
    {
        if (!IsEnabled(EventLevel.Verbose, EventKeywords.All))
            return;
        int k = (int)kind, p = (int)part;
        EventData* data = stackalloc EventData[6];
        data[0] = new EventData { DataPointer = (nint)(&k), Size = sizeof(int) };
        data[1] = new EventData { DataPointer = (nint)(&layer), Size = sizeof(int) };
        data[2] = new EventData { DataPointer = (nint)(&p), Size = sizeof(int) };
        data[3] = new EventData { DataPointer = (nint)(&microseconds), Size = sizeof(double) };
        data[4] = new EventData { DataPointer = (nint)(&weightBytes), Size = sizeof(long) };
        data[5] = new EventData { DataPointer = (nint)(&cacheBytes), Size = sizeof(long) };
        WriteEventCore(PartEventId, 6, data);
    }
}
