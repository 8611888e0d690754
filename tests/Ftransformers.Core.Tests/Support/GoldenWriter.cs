using Ftransformers.Formats;
using Ftransformers.Model;

namespace Ftransformers.Tests.Support;

/// <summary>Writes golden files in the fixture's format from the naive float64 reference.</summary>
internal static class GoldenWriter
{
    public static void Write(string path, NaiveReferenceModel reference, int vocab, IReadOnlyList<int[]> prompts, int steps)
    {
        var writer = new SafetensorsWriter();
        for (int i = 0; i < prompts.Count; i++)
        {
            var tokens = prompts[i].ToList();
            double[][] prefill = reference.Logits(tokens);
            var greedy = new int[steps];
            var decode = new float[steps * vocab];
            greedy[0] = Argmax(prefill[^1]);
            for (int k = 0; k < steps; k++)
            {
                tokens.Add(greedy[k]);
                double[] row = reference.Logits(tokens)[^1];
                for (int v = 0; v < vocab; v++)
                    decode[k * vocab + v] = (float)row[v];
                if (k + 1 < steps)
                    greedy[k + 1] = Argmax(row);
            }
            writer.AddI32($"p{i}.tokens", [prompts[i].Length], prompts[i]);
            writer.AddF32($"p{i}.prefill_logits", [prompts[i].Length, vocab], prefill.SelectMany(r => r.Select(v => (float)v)).ToArray());
            writer.AddI32($"p{i}.greedy_tokens", [steps], greedy);
            writer.AddF32($"p{i}.decode_logits", [steps, vocab], decode);
        }
        writer.WriteTo(path);
    }

    private static int Argmax(double[] row) => Array.IndexOf(row, row.Max());
}
