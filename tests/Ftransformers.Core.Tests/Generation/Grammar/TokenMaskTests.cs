using Ftransformers.Generation.Grammar;
using NUnit.Framework;

namespace Ftransformers.Tests.Generation.Grammar;

[TestFixture]
public sealed class TokenMaskTests
{
    [Test]
    public void ApplyBlocksExactlyTheTokensNotAllowed([Values(1, 63, 64, 65, 200, 1000)] int vocab, [Values(0, 2, 30)] int extraRows)
    {
        var random = new Random(vocab);
        var mask = new TokenMask(vocab);
        var allowed = new bool[vocab];
        for (int t = 0; t < vocab; t++)
            if (random.Next(4) == 0 || (t >= 64 && t < 128))    // words that are mixed, full and (elsewhere) empty
                mask.Allow(t);
        for (int t = 0; t < vocab; t++)
            allowed[t] = mask.IsAllowed(t);
        float[] logits = [.. Enumerable.Range(0, vocab + extraRows).Select(i => (float)i)];
        mask.Apply(logits);
        for (int i = 0; i < logits.Length; i++)
            Assert.That(logits[i], Is.EqualTo(i < vocab && allowed[i] ? i : float.NegativeInfinity), $"token {i}");
        Assert.That(mask.Count, Is.EqualTo(allowed.Count(a => a)));
    }
}
