namespace Ftransformers.Backends;

/// <summary>
/// What crosses the seam in one MoE layer: the normed hidden states of the step's tokens, each token's chosen experts
/// and their weights (from the attention side), and the routed sum (from the expert side). Host memory, reused
/// across layers and steps.
/// </summary>
public sealed class ExpertBatch
{
    private float[] _input = [], _output = [], _weights = [];
    private int[] _experts = [];

    /// <summary>A batch for hidden states of <paramref name="hidden"/> values and <paramref name="topK"/> experts per token.</summary>
    public ExpertBatch(int hidden, int topK)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(hidden, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(topK, 1);
        (Hidden, TopK) = (hidden, topK);
    }

    /// <summary>Values per hidden state.</summary>
    public int Hidden { get; }

    /// <summary>Experts each token is routed to.</summary>
    public int TopK { get; }

    /// <summary>The MoE layer.</summary>
    public int Layer { get; private set; }

    /// <summary>Tokens in the batch.</summary>
    public int Tokens { get; private set; }

    /// <summary>Each token's normed hidden state, [Tokens, Hidden].</summary>
    public Span<float> Input => _input.AsSpan(0, Tokens * Hidden);

    /// <summary>Each token's chosen expert ids, [Tokens, TopK]; a token names an expert at most once.</summary>
    public Span<int> Experts => _experts.AsSpan(0, Tokens * TopK);

    /// <summary>The weight of each choice, [Tokens, TopK].</summary>
    public Span<float> Weights => _weights.AsSpan(0, Tokens * TopK);

    /// <summary>Each token's routed sum, [Tokens, Hidden].</summary>
    public Span<float> Output => _output.AsSpan(0, Tokens * Hidden);

    /// <summary>Sizes the batch for <paramref name="tokens"/> tokens of layer <paramref name="layer"/>; contents are undefined until written.</summary>
    public void Reset(int layer, int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        (Layer, Tokens) = (layer, tokens);
        Grow(ref _input, tokens * Hidden);
        Grow(ref _output, tokens * Hidden);
        Grow(ref _weights, tokens * TopK);
        Grow(ref _experts, tokens * TopK);
    }

    private static void Grow<T>(ref T[] array, int length)
    {
        if (array.Length < length)
            array = new T[Math.Max(length, 2 * array.Length)];
    }
}
