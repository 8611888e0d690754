namespace Ftransformers.Kernels;

/// <summary>
/// Activations of several tokens quantized to INT8 at run time: one scale per token (W8A8) or one per block of
/// 32 values (INT4 weights). Values lie in [-127, 127]. Buffers grow on demand and are reused across calls.
/// </summary>
public sealed class Int8Activations
{
    private sbyte[] _values = [];
    private float[] _scales = [];
    private float[] _scaledSums = [];
    private int[] _codeSums = [];

    /// <summary>Tokens held.</summary>
    public int Tokens { get; private set; }
    /// <summary>Values per token.</summary>
    public int Cols { get; private set; }
    /// <summary>Values sharing a scale: 32, or <see cref="Cols"/> for per-token quantization.</summary>
    public int BlockSize { get; private set; }
    /// <summary>Scale blocks per token.</summary>
    public int BlocksPerToken => Cols / BlockSize;

    /// <summary>Every token's codes, token after token.</summary>
    internal ReadOnlySpan<sbyte> AllValues => _values.AsSpan(0, Tokens * Cols);
    /// <summary>Every token's block scales, token after token.</summary>
    internal ReadOnlySpan<float> AllScales => _scales.AsSpan(0, Tokens * BlocksPerToken);

    /// <summary>Every token's per-block Σ codes, token after token.</summary>
    internal ReadOnlySpan<int> AllCodeSums => _codeSums.AsSpan(0, Tokens * BlocksPerToken);

    /// <summary>Every token's per-block scale * Σ codes, token after token.</summary>
    internal ReadOnlySpan<float> AllScaledSums => _scaledSums.AsSpan(0, Tokens * BlocksPerToken);
    /// <summary>A token's codes.</summary>
    public ReadOnlySpan<sbyte> Values(int token) => _values.AsSpan(token * Cols, Cols);
    /// <summary>A token's block scales (x ≈ scale * code).</summary>
    public ReadOnlySpan<float> Scales(int token) => _scales.AsSpan(token * BlocksPerToken, BlocksPerToken);
    /// <summary>A token's per-block scale * Σ codes (the term a weight min or zero point multiplies).</summary>
    public ReadOnlySpan<float> ScaledSums(int token) => _scaledSums.AsSpan(token * BlocksPerToken, BlocksPerToken);

    /// <summary>Quantizes <paramref name="tokens"/> rows of <paramref name="cols"/> values, one scale per token.</summary>
    public void QuantizePerToken(ReadOnlySpan<float> x, int tokens, int cols) => Quantize(x, tokens, cols, cols);

    /// <summary>Quantizes rows in blocks of 32 values (<paramref name="cols"/> must be a multiple of 32).</summary>
    public void QuantizePerBlock(ReadOnlySpan<float> x, int tokens, int cols) => Quantize(x, tokens, cols, Int4Layout.BlockSize);

    /// <summary>
    /// Quantizes rows in blocks of <paramref name="blockSize"/> values: 32 (<see cref="QuantizePerBlock"/>) or
    /// <paramref name="cols"/> (<see cref="QuantizePerToken"/>).
    /// </summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int cols, int blockSize)
    {
        if (blockSize != cols && blockSize != Int4Layout.BlockSize)
            throw new ArgumentException($"Activations are quantized per token or in blocks of {Int4Layout.BlockSize}, not in blocks of {blockSize}.", nameof(blockSize));
        if (cols % blockSize != 0)
            throw new ArgumentException($"Block quantization needs a multiple of {blockSize} values per token, got {cols}.", nameof(cols));
        if (x.Length < tokens * cols)
            throw new ArgumentException($"{tokens} tokens of {cols} values need {tokens * cols} inputs, got {x.Length}.", nameof(x));
        Reserve(tokens, cols, blockSize);
        Int8Codes.QuantizeBlocks(x[..(tokens * cols)], blockSize, _values, _scales, _codeSums, _scaledSums);
    }

    /// <summary>
    /// Holds rows <paramref name="rows"/> of <paramref name="source"/>, in that order, as its tokens: codes, scales and
    /// sums copied, so that inputs quantized once serve every product that takes some of their rows.
    /// </summary>
    public void GatherRows(Int8Activations source, ReadOnlySpan<int> rows)
    {
        foreach (int row in rows)
            if ((uint)row >= (uint)source.Tokens)
                throw new ArgumentOutOfRangeException(nameof(rows), $"Row {row} is not one of the source's {source.Tokens} tokens.");
        Reserve(rows.Length, source.Cols, source.BlockSize);
        int cols = Cols, blocks = BlocksPerToken;
        for (int i = 0; i < rows.Length; i++)
        {
            int row = rows[i];
            source._values.AsSpan(row * cols, cols).CopyTo(_values.AsSpan(i * cols));
            source._scales.AsSpan(row * blocks, blocks).CopyTo(_scales.AsSpan(i * blocks));
            source._scaledSums.AsSpan(row * blocks, blocks).CopyTo(_scaledSums.AsSpan(i * blocks));
            source._codeSums.AsSpan(row * blocks, blocks).CopyTo(_codeSums.AsSpan(i * blocks));
        }
    }

    // Sizes the buffers for tokens rows of cols values in blocks of blockSize.
    private void Reserve(int tokens, int cols, int blockSize)
    {
        (Tokens, Cols, BlockSize) = (tokens, cols, blockSize);
        int blocks = tokens * cols / blockSize;
        if (_values.Length < tokens * cols)
            _values = new sbyte[tokens * cols];
        if (_scales.Length < blocks)
        {
            _scales = new float[blocks];
            _scaledSums = new float[blocks];
            _codeSums = new int[blocks];
        }
    }
}
