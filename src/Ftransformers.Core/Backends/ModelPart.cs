namespace Ftransformers.Backends;

/// <summary>The parts a step's time is split into, for profiles and traces.</summary>
public enum ModelPart
{
    /// <summary>The embedding lookup of the step's tokens.</summary>
    Embedding,
    /// <summary>A layer's MLA attention over the KV cache, its norm and residual included.</summary>
    Attention,
    /// <summary>A dense layer's MLP, its norm and residual included.</summary>
    DenseMlp,
    /// <summary>A MoE layer's norm and router (gate, scores, top-k).</summary>
    Router,
    /// <summary>A MoE layer's shared experts; they run while the routed experts do, so their time lies inside the routed experts'.</summary>
    SharedExperts,
    /// <summary>A MoE layer's routed experts, from their start to the sum added to the residual.</summary>
    RoutedExperts,
    /// <summary>The final norm and lm_head of the rows that sample.</summary>
    Head,
    /// <summary>Sampling the next tokens from the logits (penalties, grammar masks, streaming the text).</summary>
    Sampling,
    /// <summary>Choosing the step's sequences and tokens, and the prefix cache.</summary>
    Scheduling,
}

/// <summary>The weights a part reads in one step: every byte once, whatever the number of tokens.</summary>
/// <param name="Bytes">Bytes of weights as stored in memory.</param>
/// <param name="Parameters">Weights in the part's matrices and vectors: multiply-adds per token.</param>
public readonly record struct PartWeights(long Bytes, long Parameters)
{
    /// <summary>The sum of two parts' weights.</summary>
    public static PartWeights operator +(PartWeights a, PartWeights b) => new(a.Bytes + b.Bytes, a.Parameters + b.Parameters);

    /// <summary><paramref name="count"/> times the weights.</summary>
    public static PartWeights operator *(long count, PartWeights a) => new(count * a.Bytes, count * a.Parameters);
}
