namespace Ftransformers.Kernels;

/// <summary>
/// Rotary position embedding on interleaved pairs (x[2i], x[2i+1]), as DeepSeek's reference applies it:
/// each pair is multiplied by the complex number cos + i sin of its angle.
/// </summary>
public static class Rope
{
    /// <summary>Rotates <paramref name="x"/> in place by the per-pair <paramref name="cos"/>/<paramref name="sin"/> values.</summary>
    public static void ApplyInterleaved(Span<float> x, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        if (x.Length != 2 * cos.Length || sin.Length != cos.Length)
            throw new ArgumentException($"RoPE over {x.Length} values needs {x.Length / 2} cos/sin pairs (got {cos.Length}, {sin.Length}).");
        for (int i = 0; i < cos.Length; i++)
        {
            float re = x[2 * i], im = x[2 * i + 1];
            x[2 * i] = re * cos[i] - im * sin[i];
            x[2 * i + 1] = re * sin[i] + im * cos[i];
        }
    }
}
