namespace Ftransformers.Cli.Bench;

/// <summary>When an open-loop run sends each request: a Poisson process (exponential gaps) at a mean rate, seeded.</summary>
internal static class ArrivalSchedule
{
    /// <summary>Send times in seconds from the start of <paramref name="count"/> requests at <paramref name="rate"/> per second; the first at 0.</summary>
    public static double[] Poisson(double rate, int count, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rate);
        var random = new Random(seed);
        var times = new double[count];
        for (int i = 1; i < count; i++)
            times[i] = times[i - 1] - Math.Log(1 - random.NextDouble()) / rate;
        return times;
    }
}
