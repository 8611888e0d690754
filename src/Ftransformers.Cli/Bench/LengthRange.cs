using System.Globalization;

namespace Ftransformers.Cli.Bench;

/// <summary>A token length, fixed (<c>128</c>) or drawn uniformly per request from a closed range (<c>256:4096</c>).</summary>
internal readonly record struct LengthRange(int Min, int Max)
{
    public bool IsFixed => Min == Max;

    /// <summary>Parses <c>N</c> or <c>MIN:MAX</c>; null with a message when malformed.</summary>
    public static LengthRange? TryParse(string text, out string? error)
    {
        string[] parts = text.Split(':');
        error = null;
        if (parts.Length is 1 or 2 && parts.All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
        {
            int min = int.Parse(parts[0], CultureInfo.InvariantCulture), max = int.Parse(parts[^1], CultureInfo.InvariantCulture);
            if (min >= 1 && max >= min)
                return new LengthRange(min, max);
        }
        error = $"'{text}' is not a length: give N, or MIN:MAX with 1 <= MIN <= MAX.";
        return null;
    }

    /// <summary>The length of request <paramref name="index"/>: the same for a seed and index on every run and machine.</summary>
    public int Of(int seed, int index, int stream) => IsFixed ? Min : Min + (int)(RandomOf(seed, index, stream).NextInt64((long)Max - Min + 1));

    /// <summary>A generator that depends only on its arguments (HashCode is randomized per process, so it is not used).</summary>
    public static Random RandomOf(int seed, int index, int stream) => new(unchecked((seed * 1_000_003) ^ (index * 7_919) ^ (stream * 104_729)));

    public override string ToString() => IsFixed ? Min.ToString(CultureInfo.InvariantCulture) : $"{Min}:{Max}";
}
