namespace Ftransformers.Model;

/// <summary>YaRN context extension parameters (the <c>rope_scaling</c> block of config.json).</summary>
/// <param name="Factor">Ratio of the extended to the original context.</param>
/// <param name="OriginalMaxPositionEmbeddings">The context length the model was pretrained with.</param>
/// <param name="BetaFast">Rotation count above which dimensions keep their frequency.</param>
/// <param name="BetaSlow">Rotation count below which dimensions are fully interpolated.</param>
/// <param name="Mscale">mscale of the rotary embedding.</param>
/// <param name="MscaleAllDim">mscale of the attention softmax.</param>
public sealed record RopeScaling(double Factor, int OriginalMaxPositionEmbeddings, double BetaFast = 32, double BetaSlow = 1, double Mscale = 1, double MscaleAllDim = 0)
{
    /// <summary>YaRN's attention-temperature factor: 0.1 * m * ln(factor) + 1, or 1 without extension.</summary>
    public static double GetMscale(double factor, double mscale) => factor <= 1 ? 1.0 : 0.1 * mscale * Math.Log(factor) + 1.0;
}
