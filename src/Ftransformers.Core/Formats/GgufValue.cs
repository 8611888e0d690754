namespace Ftransformers.Formats;

/// <summary>The value types of GGUF metadata, numbered as the file stores them.</summary>
public enum GgufValueType : uint
{
#pragma warning disable CS1591 // the names are GGUF's own
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
#pragma warning restore CS1591
}

/// <summary>
/// A GGUF metadata value: a number (held as <see cref="long"/>, <see cref="ulong"/> or <see cref="double"/>), a bool,
/// a string, or an array of one element type (<see cref="object"/>[] of those).
/// </summary>
/// <param name="Type">The stored type.</param>
/// <param name="Value">The value.</param>
/// <param name="ElementType">For arrays, the elements' type.</param>
public sealed record GgufValue(GgufValueType Type, object Value, GgufValueType? ElementType = null)
{
    /// <summary>The value as a string.</summary>
    /// <exception cref="InvalidDataException">It is not a string.</exception>
    public string AsString() => Value as string ?? throw Mismatch("a string");

    /// <summary>The value as a whole number, of any integer type that holds it.</summary>
    /// <exception cref="InvalidDataException">It is not an integer, or does not fit.</exception>
    public long AsInt64() => Value switch
    {
        long l => l,
        ulong u when u <= long.MaxValue => (long)u,
        _ => throw Mismatch("an integer"),
    };

    /// <summary>The value as a number, integer or float.</summary>
    /// <exception cref="InvalidDataException">It is not a number.</exception>
    public double AsDouble() => Value switch
    {
        double d => d,
        long l => l,
        ulong u => u,
        _ => throw Mismatch("a number"),
    };

    /// <summary>The value as a bool.</summary>
    /// <exception cref="InvalidDataException">It is not a bool.</exception>
    public bool AsBool() => Value as bool? ?? throw Mismatch("a bool");

    /// <summary>The elements of an array.</summary>
    /// <exception cref="InvalidDataException">It is not an array.</exception>
    public IReadOnlyList<object> AsArray() => Value as object[] ?? throw Mismatch("an array");

    private InvalidDataException Mismatch(string expected) => new($"GGUF metadata value of type {Type} is not {expected}.");
}
