using Ftransformers.Kernels;
using Ftransformers.Model;
using Ftransformers.Quantization;
using NUnit.Framework;
using Ftransformers.Backends.Cpu;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class Int8AbsorptionTests
{
    private const int Heads = 3, Nope = 8, VHead = 6, Rank = 40, Tokens = 3;

    private static Int8Weights KvB(Random rng) => Int8Quantizer.Quantize(
        Enumerable.Range(0, Heads * (Nope + VHead) * Rank).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), Heads * (Nope + VHead), Rank);

    // The query of head h: Σ_r q_r · scale_r · codes[h's key row r], computed from the same per-token INT8 codes of
    // q ⊙ scale that the product uses, so that only float rounding separates the two.
    [Test]
    public void Queries_EqualTheTransposedProductOfTheKeyRows()
    {
        var rng = new Random(1);
        Int8Weights kvB = KvB(rng);
        var absorption = new Int8Absorption(kvB, Heads, Nope, VHead);
        const int qStride = Heads * Nope + 5, outStride = Rank + 7; // rows wider than one head, as in the model
        float[] q = Enumerable.Range(0, Tokens * qStride).Select(_ => (float)rng.NextDouble() * 4 - 2).ToArray();
        for (int h = 0; h < Heads; h++)
        {
            float[] latent = new float[Tokens * outStride];
            absorption.Queries(h, q.AsSpan(h * Nope), qStride, Tokens, latent, outStride);
            for (int t = 0; t < Tokens; t++)
            {
                float[] scaled = Enumerable.Range(0, Nope).Select(r => q[t * qStride + h * Nope + r] * kvB.Scale(h * (Nope + VHead) + r)).ToArray();
                var codes = new Int8Activations();
                codes.QuantizePerToken(scaled, 1, Nope);
                for (int j = 0; j < Rank; j++)
                {
                    long dot = 0;
                    for (int r = 0; r < Nope; r++)
                        dot += codes.Values(0)[r] * kvB.Row(h * (Nope + VHead) + r)[j];
                    double expected = (double)codes.Scales(0)[0] * dot;
                    Assert.That(latent[t * outStride + j], Is.EqualTo(expected).Within(Math.Abs(expected) * 1e-6 + 1e-9), $"head {h}, token {t}, latent {j}");
                }
                Assert.That(latent.AsSpan(t * outStride + Rank, outStride - Rank).ToArray(), Is.All.Zero, "the gap between tokens is untouched");
            }
        }
    }

    [Test]
    public void Outputs_EqualTheValueRowsTimesTheContexts()
    {
        var rng = new Random(2);
        Int8Weights kvB = KvB(rng);
        var absorption = new Int8Absorption(kvB, Heads, Nope, VHead);
        const int inStride = Heads * Rank, outStride = Heads * VHead;
        float[] contexts = Enumerable.Range(0, Tokens * inStride).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        for (int h = 0; h < Heads; h++)
        {
            float[] outputs = new float[Tokens * outStride];
            absorption.Outputs(h, contexts.AsSpan(h * Rank), inStride, Tokens, outputs.AsSpan(h * VHead), outStride);
            for (int t = 0; t < Tokens; t++)
            {
                var codes = new Int8Activations();
                codes.QuantizePerToken(contexts.AsSpan(t * inStride + h * Rank, Rank), 1, Rank);
                for (int r = 0; r < VHead; r++)
                {
                    int row = h * (Nope + VHead) + Nope + r;
                    long dot = 0;
                    for (int j = 0; j < Rank; j++)
                        dot += codes.Values(0)[j] * kvB.Row(row)[j];
                    double expected = (double)kvB.Scale(row) * codes.Scales(0)[0] * dot;
                    Assert.That(outputs[t * outStride + h * VHead + r], Is.EqualTo(expected).Within(Math.Abs(expected) * 1e-6 + 1e-9), $"head {h}, token {t}, output {r}");
                }
            }
        }
    }
}
