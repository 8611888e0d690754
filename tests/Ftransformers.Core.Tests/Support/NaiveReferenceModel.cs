using Ftransformers.Formats;
using Ftransformers.Model;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Tests.Support;

/// <summary>
/// An independent, deliberately plain float64 implementation of DeepSeek-V3 (the Hugging Face modeling code's
/// "naive" attention: keys and values materialized per head, no cache, every step recomputed from scratch).
/// Tests use it as the truth for architectures the reference fixtures do not cover.
/// </summary>
internal sealed class NaiveReferenceModel(DeepSeekV3Config c, Checkpoint checkpoint)
{
    private readonly Dictionary<string, double[]> _weights = [];

    private double[] W(string name)
    {
        if (!_weights.TryGetValue(name, out double[]? w))
            _weights[name] = w = Array.ConvertAll(checkpoint.ReadSingle(name, c.Fp8BlockSize), v => (double)v);
        return w;
    }

    /// <summary>Logits [tokens.Length, vocab] at every position.</summary>
    public double[][] Logits(IReadOnlyList<int> tokens)
    {
        int n = tokens.Count, d = c.HiddenSize;
        double[] embed = W("model.embed_tokens.weight");
        var h = new double[n][];
        for (int t = 0; t < n; t++)
            h[t] = embed.AsSpan(tokens[t] * d, d).ToArray();
        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            string p = $"model.layers.{layer}";
            double[][] x = h.Select(r => Norm(r, W(p + ".input_layernorm.weight"))).ToArray();
            double[][] a = Attention(x, p + ".self_attn");
            for (int t = 0; t < n; t++)
                for (int i = 0; i < d; i++)
                    h[t][i] += a[t][i];
            x = h.Select(r => Norm(r, W(p + ".post_attention_layernorm.weight"))).ToArray();
            for (int t = 0; t < n; t++)
            {
                double[] f = c.IsMoeLayer(layer) ? Moe(x[t], p + ".mlp") : Mlp(x[t], p + ".mlp");
                for (int i = 0; i < d; i++)
                    h[t][i] += f[i];
            }
        }
        string head = checkpoint.Contains("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
        double[] lm = W(head), finalNorm = W("model.norm.weight");
        return h.Select(r => MatVec(lm, c.VocabSize, d, Norm(r, finalNorm))).ToArray();
    }

    private double[][] Attention(double[][] x, string p)
    {
        int n = x.Length, heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, v = c.VHeadDim, rank = c.KvLoraRank;
        var q = new double[n][];
        for (int t = 0; t < n; t++)
            q[t] = c.QLoraRank is int r
                ? MatVec(W(p + ".q_b_proj.weight"), heads * c.QkHeadDim, r, Norm(MatVec(W(p + ".q_a_proj.weight"), r, c.HiddenSize, x[t]), W(p + ".q_a_layernorm.weight")))
                : MatVec(W(p + ".q_proj.weight"), heads * c.QkHeadDim, c.HiddenSize, x[t]);
        double[] kvA = W(p + ".kv_a_proj_with_mqa.weight"), kvB = W(p + ".kv_b_proj.weight"), kvNorm = W(p + ".kv_a_layernorm.weight");
        var kNope = new double[n][]; var kPe = new double[n][]; var values = new double[n][];
        for (int t = 0; t < n; t++)
        {
            double[] kv = MatVec(kvA, rank + rope, c.HiddenSize, x[t]);
            double[] latent = Norm(kv[..rank], kvNorm);
            double[] up = MatVec(kvB, heads * (nope + v), rank, latent);
            kNope[t] = new double[heads * nope];
            values[t] = new double[heads * v];
            for (int hd = 0; hd < heads; hd++)
            {
                Array.Copy(up, hd * (nope + v), kNope[t], hd * nope, nope);
                Array.Copy(up, hd * (nope + v) + nope, values[t], hd * v, v);
            }
            kPe[t] = Rotate(kv[rank..], t);
        }
        double scale = 1 / Math.Sqrt(c.QkHeadDim);
        if (c.RopeScaling is { MscaleAllDim: > 0 } y && y.Factor > 1)
        {
            double m = 0.1 * y.MscaleAllDim * Math.Log(y.Factor) + 1;
            scale *= m * m;
        }
        var output = new double[n][];
        for (int t = 0; t < n; t++)
        {
            var o = new double[heads * v];
            for (int hd = 0; hd < heads; hd++)
            {
                double[] qPe = Rotate(q[t].AsSpan(hd * c.QkHeadDim + nope, rope).ToArray(), t);
                var scores = new double[t + 1];
                for (int s = 0; s <= t; s++)
                {
                    double dot = 0;
                    for (int i = 0; i < nope; i++)
                        dot += q[t][hd * c.QkHeadDim + i] * kNope[s][hd * nope + i];
                    for (int i = 0; i < rope; i++)
                        dot += qPe[i] * kPe[s][i];
                    scores[s] = dot * scale;
                }
                double max = scores.Max(), sum = scores.Sum(sc => Math.Exp(sc - max));
                for (int s = 0; s <= t; s++)
                    for (int i = 0; i < v; i++)
                        o[hd * v + i] += Math.Exp(scores[s] - max) / sum * values[s][hd * v + i];
            }
            output[t] = MatVec(W(p + ".o_proj.weight"), c.HiddenSize, heads * v, o);
        }
        return output;
    }

    // Interleaved pairs rotated by position * inv_freq, with YaRN's blended frequencies and cos/sin mscale.
    private double[] Rotate(double[] x, int position)
    {
        int dim = x.Length;
        var result = new double[dim];
        double mscale = 1;
        for (int i = 0; i < dim / 2; i++)
        {
            double freq = Math.Pow(c.RopeTheta, -2.0 * i / dim);
            if (c.RopeScaling is { } y)
            {
                double CorrectionDim(double rotations) => dim * Math.Log(y.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(c.RopeTheta));
                double low = Math.Max(Math.Floor(CorrectionDim(y.BetaFast)), 0), high = Math.Min(Math.Ceiling(CorrectionDim(y.BetaSlow)), dim - 1);
                if (low == high) high += 0.001;
                double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
                freq = freq / y.Factor * ramp + freq * (1 - ramp);
                double M(double m) => y.Factor <= 1 ? 1 : 0.1 * m * Math.Log(y.Factor) + 1;
                mscale = M(y.Mscale) / M(y.MscaleAllDim);
            }
            double angle = position * freq, cos = Math.Cos(angle) * mscale, sin = Math.Sin(angle) * mscale;
            result[2 * i] = x[2 * i] * cos - x[2 * i + 1] * sin;
            result[2 * i + 1] = x[2 * i] * sin + x[2 * i + 1] * cos;
        }
        return result;
    }

    private double[] Moe(double[] x, string p)
    {
        int e = c.NRoutedExperts;
        double[] logits = MatVec(W(p + ".gate.weight"), e, c.HiddenSize, x);
        double[] scores;
        if (c.ScoringFunc == "sigmoid")
            scores = logits.Select(l => 1 / (1 + Math.Exp(-l))).ToArray();
        else
        {
            double max = logits.Max(), sum = logits.Sum(l => Math.Exp(l - max));
            scores = logits.Select(l => Math.Exp(l - max) / sum).ToArray();
        }
        bool hasBias = checkpoint.Contains(p + ".gate.e_score_correction_bias");
        double[] biased = hasBias ? scores.Zip(W(p + ".gate.e_score_correction_bias"), (s, b) => s + b).ToArray() : (double[])scores.Clone();
        int perGroup = e / c.NGroup;
        var allowed = Enumerable.Range(0, e).ToHashSet();
        if (c.NGroup > 1)
        {
            var groupScore = Enumerable.Range(0, c.NGroup).Select(g =>
            {
                var members = biased.Skip(g * perGroup).Take(perGroup).OrderByDescending(s => s);
                return hasBias ? members.Take(2).Sum() : members.First();
            }).ToArray();
            var keptGroups = Enumerable.Range(0, c.NGroup).OrderByDescending(g => groupScore[g]).Take(c.TopkGroup).ToHashSet();
            allowed = Enumerable.Range(0, e).Where(i => keptGroups.Contains(i / perGroup)).ToHashSet();
        }
        int[] chosen = allowed.OrderByDescending(i => biased[i]).Take(c.NumExpertsPerTok).ToArray();
        double[] weights = chosen.Select(i => scores[i]).ToArray();
        double total = weights.Sum();
        var y = new double[c.HiddenSize];
        for (int k = 0; k < chosen.Length; k++)
        {
            double w = (c.NormTopkProb && chosen.Length > 1 ? weights[k] / total : weights[k]) * c.RoutedScalingFactor;
            double[] ex = Mlp(x, $"{p}.experts.{chosen[k]}");
            for (int i = 0; i < y.Length; i++)
                y[i] += w * ex[i];
        }
        if (c.NSharedExperts > 0)
        {
            double[] shared = Mlp(x, p + ".shared_experts");
            for (int i = 0; i < y.Length; i++)
                y[i] += shared[i];
        }
        return y;
    }

    private double[] Mlp(double[] x, string p)
    {
        int width = (int)checkpoint.Info(p + ".gate_proj.weight").Shape[0];
        double[] g = MatVec(W(p + ".gate_proj.weight"), width, x.Length, x);
        double[] u = MatVec(W(p + ".up_proj.weight"), width, x.Length, x);
        for (int i = 0; i < width; i++)
            g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
        return MatVec(W(p + ".down_proj.weight"), x.Length, width, g);
    }

    private double[] Norm(double[] x, double[] weight)
    {
        double ms = x.Sum(v => v * v) / x.Length, inv = 1 / Math.Sqrt(ms + c.RmsNormEps);
        return x.Select((v, i) => v * inv * weight[i]).ToArray();
    }

    private static double[] MatVec(double[] w, int rows, int cols, double[] x)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int i = 0; i < cols; i++)
                s += w[(long)r * cols + i] * x[i];
            y[r] = s;
        }
        return y;
    }
}
