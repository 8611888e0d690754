namespace Ftransformers.Kernels;

/// <summary>Decoding of FP8 E4M3 (the OCP "fn" variant: no infinities, 0x7F/0xFF are NaN) as in DeepSeek-V3's release.</summary>
public static class Float8E4M3
{
    private static readonly float[] Table = BuildTable();

    /// <summary>The F32 value of one FP8 byte.</summary>
    public static float ToSingle(byte bits) => Table[bits];

    /// <summary>Decodes FP8 bytes, multiplying each by <paramref name="scale"/>.</summary>
    public static void ToSingle(ReadOnlySpan<byte> source, float scale, Span<float> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException("Destination is shorter than source.", nameof(destination));
        for (int i = 0; i < source.Length; i++)
            destination[i] = Table[source[i]] * scale;
    }

    private static float[] BuildTable()
    {
        var table = new float[256];
        for (int b = 0; b < 256; b++)
        {
            int sign = b >> 7, exponent = (b >> 3) & 0xF, mantissa = b & 7;
            float magnitude = (exponent, mantissa) switch
            {
                (15, 7) => float.NaN,
                (0, _) => mantissa / 8f * MathF.Pow(2, -6),
                _ => (1 + mantissa / 8f) * MathF.Pow(2, exponent - 7),
            };
            table[b] = sign == 1 ? -magnitude : magnitude;
        }
        return table;
    }
}
