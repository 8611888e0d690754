using System.Runtime.CompilerServices;

namespace Ftransformers.Kernels;

/// <summary>
/// One instruction set's pass of a row kernel: row <c>r</c> against tokens [t, t + TTokens), as a type so that each path
/// and token count compiles to its own loop. <typeparamref name="TJob"/> carries the kernel's operands.
/// </summary>
internal interface IRowPasses<TJob>
{
    static abstract void Pass<TTokens>(TJob job, int r, int t) where TTokens : struct, IPassCount;
}

/// <summary>How the GGUF block kernels (<see cref="Q4KRows"/>, <see cref="Q6KRows"/>) go over a row's tokens, and store them.</summary>
internal static class RowPasses
{
    /// <summary>
    /// Row <paramref name="r"/> against every token: four a pass, then two, then one. Each pass computes a token as a pass
    /// of one would, so a token's bits do not depend on which tokens share its pass.
    /// </summary>
    public static void Tile<TPasses, TJob>(TJob job, int r, int tokens) where TPasses : struct, IRowPasses<TJob>
    {
        int t = 0;
        for (; t + 4 <= tokens; t += 4)
            TPasses.Pass<Four>(job, r, t);
        if (tokens - t >= 2)
        {
            TPasses.Pass<Two>(job, r, t);
            t += 2;
        }
        if (t < tokens)
            TPasses.Pass<One>(job, r, t);
    }

    /// <summary>A pass's sums into y[token * rows + r], the first TTokens of them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Store<TTokens>(float* y, int rows, int r, int t, float s0, float s1, float s2, float s3) where TTokens : struct, IPassCount
    {
        y[(long)t * rows + r] = s0;
        if (TTokens.Value > 1)
            y[(long)(t + 1) * rows + r] = s1;
        if (TTokens.Value > 2)
        {
            y[(long)(t + 2) * rows + r] = s2;
            y[(long)(t + 3) * rows + r] = s3;
        }
    }
}
