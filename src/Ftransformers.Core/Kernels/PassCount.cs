namespace Ftransformers.Kernels;

/// <summary>
/// How many tokens (or rows) one pass of a multi-token kernel serves, as a type: each count compiles to its own loop,
/// with no tests per token and accumulators that stay in registers.
/// </summary>
internal interface IPassCount
{
    static abstract int Value { get; }
}

internal readonly struct One : IPassCount
{
    public static int Value => 1;
}

internal readonly struct Two : IPassCount
{
    public static int Value => 2;
}

internal readonly struct Three : IPassCount
{
    public static int Value => 3;
}

internal readonly struct Four : IPassCount
{
    public static int Value => 4;
}

internal readonly struct Six : IPassCount
{
    public static int Value => 6;
}

internal readonly struct Eight : IPassCount
{
    public static int Value => 8;
}
