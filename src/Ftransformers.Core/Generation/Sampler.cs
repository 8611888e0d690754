using System.Numerics.Tensors;

namespace Ftransformers.Generation;

/// <summary>
/// Draws tokens from logits: temperature, then top-k, min-p and top-p filters on the probabilities, then one
/// seeded draw. Temperature 0 (or top-k 1) is greedy. One sampler serves one request.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private int[] _order = [];
    private float[] _probabilities = [];

    /// <summary>Creates the sampler of one request.</summary>
    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _random = options.Seed is int seed ? new Random(seed) : new Random();
    }

    /// <summary>Picks the next token from a row of logits.</summary>
    public int Next(ReadOnlySpan<float> logits)
    {
        if (_options.Temperature == 0 || _options.TopK == 1)
            return TensorPrimitives.IndexOfMax(logits);

        int n = logits.Length;
        if (_probabilities.Length != n)
        {
            _probabilities = new float[n];
            _order = new int[n];
        }
        Span<float> p = _probabilities;
        TensorPrimitives.Divide(logits, _options.Temperature, p);
        TensorPrimitives.SoftMax(p, p);

        // Without filters every token is a candidate: draw directly, no sort.
        int count = n;
        if (_options.TopK > 0 || _options.MinP > 0 || _options.TopP < 1)
            count = Filter(p);
        else
            for (int i = 0; i < n; i++)
                _order[i] = i;

        double mass = 0;
        for (int i = 0; i < count; i++)
            mass += p[_order[i]];
        double draw = _random.NextDouble() * mass;
        for (int i = 0; i < count; i++)
        {
            draw -= p[_order[i]];
            if (draw < 0)
                return _order[i];
        }
        return _order[count - 1];
    }

    // Sorts candidates by probability, most likely first, and returns how many survive top-k, min-p and top-p.
    private int Filter(ReadOnlySpan<float> p)
    {
        for (int i = 0; i < _order.Length; i++)
            _order[i] = i;
        float[] probs = _probabilities;
        Array.Sort(_order, (a, b) => probs[b].CompareTo(probs[a]));
        int count = _order.Length;
        if (_options.TopK > 0)
            count = Math.Min(count, _options.TopK);
        if (_options.MinP > 0)
        {
            float floor = _options.MinP * p[_order[0]];
            while (count > 1 && p[_order[count - 1]] < floor)
                count--;
        }
        if (_options.TopP < 1)
        {
            float total = 0;
            for (int i = 0; i < count; i++)
                total += p[_order[i]];
            float cumulative = 0;
            for (int i = 0; i < count; i++)
            {
                cumulative += p[_order[i]];
                if (cumulative >= _options.TopP * total)
                    return i + 1;
            }
        }
        return count;
    }
}
