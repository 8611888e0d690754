namespace Ftransformers.Kernels;

/// <summary>
/// How many tokens one pass of a multi-token kernel serves, as a type: each count compiles to its own loop, with no
/// tests per token and accumulators that stay in registers.
/// </summary>
internal interface ITokenCount
{
    static abstract int Value { get; }
}

internal readonly struct OneToken : ITokenCount
{
    public static int Value => 1;
}

internal readonly struct TwoTokens : ITokenCount
{
    public static int Value => 2;
}

internal readonly struct FourTokens : ITokenCount
{
    public static int Value => 4;
}

internal readonly struct EightTokens : ITokenCount
{
    public static int Value => 8;
}
