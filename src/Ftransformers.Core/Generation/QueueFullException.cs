namespace Ftransformers.Generation;

/// <summary>The session's waiting queue is full; the request was not admitted. Retry later.</summary>
public sealed class QueueFullException(string message) : InvalidOperationException(message);
