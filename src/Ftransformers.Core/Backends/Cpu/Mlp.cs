using Ftransformers.Kernels;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>The SwiGLU feed-forward block: down(silu(gate x) * up x). Dense layers, shared and routed experts use it.</summary>
internal sealed class Mlp(WeightMatrix gate, WeightMatrix up, WeightMatrix down)
{
    public int Width => gate.Rows;

    public WeightMatrix Gate => gate;

    public WeightMatrix Up => up;

    public WeightMatrix Down => down;

    /// <summary>The three matrices' weights.</summary>
    public PartWeights Footprint => gate.Footprint + up.Footprint + down.Footprint;

    public static Mlp Load(WeightLoader weights, string prefix, int hidden, int width, WeightFormat format) => new(
        weights.Matrix(prefix + ".gate_proj.weight", width, hidden, format),
        weights.Matrix(prefix + ".up_proj.weight", width, hidden, format),
        weights.Matrix(prefix + ".down_proj.weight", hidden, width, format));

    /// <summary>y[t] = mlp(x[t]) for <paramref name="tokens"/> rows.</summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, int tokens)
    {
        using var g = new PooledBuffer<float>(tokens * Width);
        using var u = new PooledBuffer<float>(tokens * Width);
        gate.Multiply(x, g.Span, tokens);
        up.Multiply(x, u.Span, tokens);
        Activations.SiluMultiply(g.Span, u.Span, g.Span);
        down.Multiply(g.Span, y, tokens);
    }
}
