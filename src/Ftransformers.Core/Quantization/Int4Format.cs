namespace Ftransformers.Quantization;

/// <summary>
/// Grouped INT4: each run of <see cref="GroupSize"/> weights of a row shares a scale, and a min unless
/// <see cref="Symmetric"/> (then w = scale * (q - 8)); otherwise w = scale * q + min, q in 0..15.
/// </summary>
/// <param name="GroupSize">32 or 128 weights per scale.</param>
/// <param name="Symmetric">No min; the zero point is fixed at 8.</param>
public sealed record Int4Format(int GroupSize = 32, bool Symmetric = false)
{
    /// <summary>The default for routed experts: group 32 with a scale and a min.</summary>
    public static Int4Format Default { get; } = new();

    /// <summary>Throws unless the group size is 32 or 128.</summary>
    public void Validate()
    {
        if (GroupSize is not (32 or 128))
            throw new ArgumentOutOfRangeException(nameof(GroupSize), GroupSize, "INT4 group size must be 32 or 128.");
    }

    /// <summary>Text form used in configs and headers: int4-g32-asym, int4-g128-sym.</summary>
    public override string ToString() => $"int4-g{GroupSize}-{(Symmetric ? "sym" : "asym")}";

    /// <summary>Reads the text form of <see cref="ToString"/>.</summary>
    public static bool TryParse(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Int4Format? format)
    {
        format = text switch
        {
            "int4-g32-asym" => new Int4Format(32, false),
            "int4-g32-sym" => new Int4Format(32, true),
            "int4-g128-asym" => new Int4Format(128, false),
            "int4-g128-sym" => new Int4Format(128, true),
            _ => null,
        };
        return format != null;
    }
}
