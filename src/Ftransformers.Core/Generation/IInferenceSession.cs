using Ftransformers.Model;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation;

/// <summary>A loaded model ready to generate: what applications and hosts talk to.</summary>
public interface IInferenceSession : IDisposable
{
    /// <summary>The model's architecture.</summary>
    DeepSeekV3Config Config { get; }

    /// <summary>The tokenizer requests are encoded with.</summary>
    ITextTokenizer Tokenizer { get; }

    /// <summary>
    /// Generates a continuation, streaming chunks as tokens are produced. Cancelling the token ends the stream with
    /// <see cref="OperationCanceledException"/> at once; a cancelled or abandoned request is dropped, and its KV
    /// cache freed, before the engine's next step.
    /// </summary>
    /// <exception cref="ArgumentException">The request is malformed or its prompt does not fit the context or the KV cache.</exception>
    /// <exception cref="QueueFullException">Too many requests are waiting; retry later.</exception>
    IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default);

    /// <summary>The session's current load.</summary>
    SessionStatistics GetStatistics();
}
