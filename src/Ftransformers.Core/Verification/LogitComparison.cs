using System.Numerics.Tensors;

namespace Ftransformers.Verification;

/// <summary>Accumulates how far rows of logits are from reference rows.</summary>
public sealed class LogitComparison
{
    private double _klSum;

    /// <summary>Rows compared.</summary>
    public int Rows { get; private set; }

    /// <summary>Largest ‖ours − ref‖ / ‖ref‖ over the rows.</summary>
    public double MaxRelativeError { get; private set; }

    /// <summary>Rows whose argmax equals the reference's.</summary>
    public int Top1Matches { get; private set; }

    /// <summary>Mean KL(softmax(ref) ‖ softmax(ours)) over the rows.</summary>
    public double MeanKl => Rows == 0 ? 0 : _klSum / Rows;

    /// <summary>Fraction of rows whose argmax equals the reference's.</summary>
    public double Top1Agreement => Rows == 0 ? 1 : (double)Top1Matches / Rows;

    /// <summary>Adds one row.</summary>
    public void Add(ReadOnlySpan<float> ours, ReadOnlySpan<float> reference)
    {
        if (ours.Length != reference.Length)
            throw new ArgumentException($"Rows differ in length: {ours.Length} vs {reference.Length}.");
        double diff = 0, norm = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double d = (double)ours[i] - reference[i];
            diff += d * d;
            norm += (double)reference[i] * reference[i];
        }
        MaxRelativeError = Math.Max(MaxRelativeError, Math.Sqrt(diff / Math.Max(norm, double.Epsilon)));
        _klSum += KlDivergence(reference, ours);
        if (TensorPrimitives.IndexOfMax(ours) == TensorPrimitives.IndexOfMax(reference))
            Top1Matches++;
        Rows++;
    }

    /// <summary>KL(softmax(p) ‖ softmax(q)) of two logit rows, in float64.</summary>
    public static double KlDivergence(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        double lp = LogSumExp(p), lq = LogSumExp(q), kl = 0;
        for (int i = 0; i < p.Length; i++)
        {
            double logP = p[i] - lp, logQ = q[i] - lq;
            kl += Math.Exp(logP) * (logP - logQ);
        }
        return Math.Max(kl, 0);
    }

    private static double LogSumExp(ReadOnlySpan<float> x)
    {
        double max = TensorPrimitives.Max(x), sum = 0;
        foreach (float v in x)
            sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }
}
