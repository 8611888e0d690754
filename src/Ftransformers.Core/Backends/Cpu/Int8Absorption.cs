using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Quantization;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// MLA's absorbed kv_b products in W8A8, for a kv_b stored in INT8: a head's query into latent space,
/// q_nope · W_uk = Σ_r (q_r · scale_r) · codes_r, runs as an INT8 product over W_uk's codes transposed at load (the row
/// scales move onto the activations), and its output, W_uv · context, over W_uv's rows as they are. Both quantize
/// their activations per token, like every other W8A8 product, instead of widening kv_b's rows to F32.
/// </summary>
internal sealed class Int8Absorption
{
    private readonly Int8Weights[] _keysTransposed, _values;
    private readonly float[][] _keyScales;
    private readonly int _nope, _rank, _vHead;

    [ThreadStatic]
    private static Scratch? t_scratch;

    public Int8Absorption(Int8Weights kvB, int heads, int nope, int vHead)
    {
        int rank = kvB.Cols, kvbHead = nope + vHead;
        (_nope, _rank, _vHead) = (nope, rank, vHead);
        _keysTransposed = new Int8Weights[heads];
        _values = new Int8Weights[heads];
        _keyScales = new float[heads][];
        var unitScales = PinnedArray<float>.Uninitialized(rank);
        unitScales.Span.Fill(1f);
        for (int h = 0; h < heads; h++)
        {
            var transposed = PinnedArray<sbyte>.Uninitialized(rank * nope);
            Span<sbyte> codes = transposed.Span;
            for (int r = 0; r < nope; r++)
            {
                ReadOnlySpan<sbyte> row = kvB.Row(h * kvbHead + r);
                for (int j = 0; j < rank; j++)
                    codes[j * nope + r] = row[j];
            }
            _keysTransposed[h] = Int8Weights.FromOwned(rank, nope, transposed, unitScales);
            _keyScales[h] = kvB.Scales.Slice(h * kvbHead, nope).ToArray();
            _values[h] = kvB.Slice(h * kvbHead + nope, vHead);
        }
    }

    /// <summary>
    /// latent[t] = q_nope[t] · W_uk of head <paramref name="head"/> for <paramref name="tokens"/> tokens; token t's q_nope
    /// starts at queries[t * inStride], its latent at latent[t * outStride].
    /// </summary>
    public void Queries(int head, ReadOnlySpan<float> queries, int inStride, int tokens, Span<float> latent, int outStride)
    {
        Scratch s = t_scratch ??= new Scratch();
        Span<float> scaled = Scratch.Grow(ref s.Inputs, tokens * _nope);
        for (int t = 0; t < tokens; t++)
            TensorPrimitives.Multiply(queries.Slice(t * inStride, _nope), _keyScales[head], scaled.Slice(t * _nope, _nope));
        s.Activations.QuantizePerToken(scaled, tokens, _nope);
        Span<float> products = Scratch.Grow(ref s.Outputs, tokens * _rank);
        Int8Dot.Rows(_keysTransposed[head].Layout, 0, _rank, s.Activations, products);
        for (int t = 0; t < tokens; t++)
            products.Slice(t * _rank, _rank).CopyTo(latent.Slice(t * outStride, _rank));
    }

    /// <summary>
    /// outputs[t] = W_uv of head <paramref name="head"/> · contexts[t] for <paramref name="tokens"/> tokens; token t's
    /// latent context starts at contexts[t * inStride], its output at outputs[t * outStride].
    /// </summary>
    public void Outputs(int head, ReadOnlySpan<float> contexts, int inStride, int tokens, Span<float> outputs, int outStride)
    {
        Scratch s = t_scratch ??= new Scratch();
        Span<float> gathered = Scratch.Grow(ref s.Inputs, tokens * _rank);
        for (int t = 0; t < tokens; t++)
            contexts.Slice(t * inStride, _rank).CopyTo(gathered.Slice(t * _rank, _rank));
        s.Activations.QuantizePerToken(gathered, tokens, _rank);
        Span<float> products = Scratch.Grow(ref s.Outputs, tokens * _vHead);
        Int8Dot.Rows(_values[head].Layout, 0, _vHead, s.Activations, products);
        for (int t = 0; t < tokens; t++)
            products.Slice(t * _vHead, _vHead).CopyTo(outputs.Slice(t * outStride, _vHead));
    }

    // Per-thread buffers: heads run on the compute pool's threads at once.
    private sealed class Scratch
    {
        public float[] Inputs = [], Outputs = [];

        public Int8Activations Activations { get; } = new();

        public static Span<float> Grow(ref float[] buffer, int length)
        {
            if (buffer.Length < length)
                buffer = new float[length];
            return buffer.AsSpan(0, length);
        }
    }
}
