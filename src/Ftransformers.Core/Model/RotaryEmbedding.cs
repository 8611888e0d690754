namespace Ftransformers.Model;

/// <summary>
/// Rotary frequencies of the decoupled RoPE part of MLA, with YaRN's frequency interpolation when the config
/// extends the context. Angles are formed in F32 as the reference does (position x frequency).
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly float[] _inverseFrequencies;
    private readonly float _mscale;

    /// <summary>Per-pair inverse frequencies after YaRN interpolation.</summary>
    public ReadOnlySpan<float> InverseFrequencies => _inverseFrequencies;

    /// <summary>Builds the frequencies for a rotary width of <paramref name="dim"/> (even).</summary>
    public RotaryEmbedding(int dim, double theta, RopeScaling? scaling)
    {
        if (dim <= 0 || dim % 2 != 0)
            throw new ArgumentException($"Rotary width must be positive and even, got {dim}.", nameof(dim));
        int pairs = dim / 2;
        _inverseFrequencies = new float[pairs];
        _mscale = 1f;
        for (int i = 0; i < pairs; i++)
            _inverseFrequencies[i] = (float)(1.0 / Math.Pow(theta, 2.0 * i / dim));
        if (scaling is null)
            return;

        // YaRN: dimensions that rotate fewer than beta_slow times over the original context are divided by the
        // factor, those above beta_fast keep their frequency, and a linear ramp blends the band between.
        double low = Math.Max(Math.Floor(CorrectionDim(scaling.BetaFast, dim, theta, scaling.OriginalMaxPositionEmbeddings)), 0);
        double high = Math.Min(Math.Ceiling(CorrectionDim(scaling.BetaSlow, dim, theta, scaling.OriginalMaxPositionEmbeddings)), dim - 1);
        if (low == high)
            high += 0.001;
        for (int i = 0; i < pairs; i++)
        {
            double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            double keep = 1 - ramp;
            double f = _inverseFrequencies[i];
            _inverseFrequencies[i] = (float)(f / scaling.Factor * (1 - keep) + f * keep);
        }
        _mscale = (float)(RopeScaling.GetMscale(scaling.Factor, scaling.Mscale) / RopeScaling.GetMscale(scaling.Factor, scaling.MscaleAllDim));
    }

    /// <summary>The cos and sin of every pair's angle at <paramref name="position"/>.</summary>
    public void Angles(int position, Span<float> cos, Span<float> sin)
    {
        for (int i = 0; i < _inverseFrequencies.Length; i++)
        {
            float angle = position * _inverseFrequencies[i];
            cos[i] = (float)Math.Cos(angle) * _mscale;
            sin[i] = (float)Math.Sin(angle) * _mscale;
        }
    }

    /// <summary>Rotates interleaved pairs of <paramref name="x"/> in place for <paramref name="position"/>.</summary>
    public void Apply(Span<float> x, int position)
    {
        Span<float> cos = stackalloc float[_inverseFrequencies.Length];
        Span<float> sin = stackalloc float[_inverseFrequencies.Length];
        Angles(position, cos, sin);
        Kernels.Rope.ApplyInterleaved(x, cos, sin);
    }

    // The dimension index at which a frequency completes `rotations` turns over `maxPositions` positions.
    private static double CorrectionDim(double rotations, int dim, double theta, int maxPositions) =>
        dim * Math.Log(maxPositions / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
}
