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
    /// Generates a continuation, streaming chunks as tokens are produced. Cancelling the token stops the work
    /// at the next layer boundary and ends the stream with <see cref="OperationCanceledException"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The request is malformed or its prompt does not fit the context.</exception>
    IAsyncEnumerable<GenerationChunk> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default);

    /// <summary>The session's current load.</summary>
    SessionStatistics GetStatistics();
}
