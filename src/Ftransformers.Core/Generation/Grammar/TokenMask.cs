using System.Numerics;

namespace Ftransformers.Generation.Grammar;

/// <summary>The tokens a grammar allows at one point: a bit per token id.</summary>
internal sealed class TokenMask
{
    private readonly ulong[] _bits;

    /// <summary>A mask of <paramref name="vocabSize"/> tokens, none allowed.</summary>
    public TokenMask(int vocabSize)
    {
        VocabSize = vocabSize;
        _bits = new ulong[(vocabSize + 63) / 64];
    }

    /// <summary>Tokens the mask covers.</summary>
    public int VocabSize { get; }

    /// <summary>Allows <paramref name="token"/>.</summary>
    public void Allow(int token) => _bits[token >> 6] |= 1UL << token;

    /// <summary>Whether <paramref name="token"/> is allowed.</summary>
    public bool IsAllowed(int token) => (uint)token < (uint)VocabSize && (_bits[token >> 6] & (1UL << token)) != 0;

    /// <summary>How many tokens are allowed.</summary>
    public int Count => _bits.Sum(w => BitOperations.PopCount(w));

    /// <summary>Sets the logits of every token the mask does not allow to minus infinity.</summary>
    public void Apply(Span<float> logits)
    {
        int n = Math.Min(logits.Length, VocabSize);
        for (int w = 0; w < _bits.Length; w++)
        {
            ulong word = _bits[w];
            int start = w * 64;
            if (word == 0 && start + 64 <= n)
            {
                logits.Slice(start, 64).Fill(float.NegativeInfinity);
                continue;
            }
            // Only the cleared bits below n are written.
            for (ulong blocked = ~word; blocked != 0; blocked &= blocked - 1)
            {
                int i = start + BitOperations.TrailingZeroCount(blocked);
                if (i >= n)
                    break;
                logits[i] = float.NegativeInfinity;
            }
        }
        // Ids past the tokenizer's vocabulary (the model's padding rows) are never allowed.
        logits[n..].Fill(float.NegativeInfinity);
    }
}
