using System.Runtime.InteropServices;
using Ftransformers.Formats;

namespace Ftransformers.Verification;

/// <summary>
/// One prompt of a golden file (the fixture format): its tokens, the reference logits of a full prefill,
/// the reference greedy continuation, and the logits of each incremental decode step.
/// </summary>
/// <param name="Index">i in the tensor names <c>p{i}.*</c>.</param>
/// <param name="Tokens">The prompt.</param>
/// <param name="PrefillLogits">[tokens, vocab] logits at every prompt position.</param>
/// <param name="GreedyTokens">The greedy continuation; token 0 is the argmax of the last prefill row.</param>
/// <param name="DecodeLogits">[steps, vocab]: row k after feeding GreedyTokens[k].</param>
/// <param name="Vocab">Logits per row.</param>
public sealed record GoldenPrompt(int Index, int[] Tokens, float[] PrefillLogits, int[] GreedyTokens, float[] DecodeLogits, int Vocab)
{
    /// <summary>Reads every <c>p{i}.*</c> group of a golden safetensors file, i = 0, 1, ... until one is missing.</summary>
    /// <exception cref="InvalidDataException">The file has no prompts or a group is incomplete or misshapen.</exception>
    public static IReadOnlyList<GoldenPrompt> ReadAll(string path)
    {
        using SafetensorsFile file = SafetensorsFile.Open(path);
        var prompts = new List<GoldenPrompt>();
        for (int i = 0; file.Contains($"p{i}.tokens"); i++)
        {
            int[] tokens = ReadInts(file, path, $"p{i}.tokens");
            int[] greedy = ReadInts(file, path, $"p{i}.greedy_tokens");
            (float[] prefill, int vocab) = ReadMatrix(file, path, $"p{i}.prefill_logits", tokens.Length);
            (float[] decode, int decodeVocab) = ReadMatrix(file, path, $"p{i}.decode_logits", greedy.Length);
            if (decodeVocab != vocab)
                throw new InvalidDataException($"{path}: p{i}.decode_logits has {decodeVocab} columns but p{i}.prefill_logits has {vocab}.");
            prompts.Add(new GoldenPrompt(i, tokens, prefill, greedy, decode, vocab));
        }
        if (prompts.Count == 0)
            throw new InvalidDataException($"{path}: no golden prompts (expected tensors p0.tokens, p0.prefill_logits, ...).");
        return prompts;
    }

    private static int[] ReadInts(SafetensorsFile file, string path, string name)
    {
        TensorInfo info = Get(file, path, name);
        if (info.DType != TensorDType.I32 || info.Shape.Length != 1)
            throw new InvalidDataException($"{path}: tensor '{name}' must be 1-D I32, got {info.DType} {info.ShapeText}.");
        return MemoryMarshal.Cast<byte, int>(file.GetBytes(info)).ToArray();
    }

    private static (float[], int) ReadMatrix(SafetensorsFile file, string path, string name, int rows)
    {
        TensorInfo info = Get(file, path, name);
        if (info.DType != TensorDType.F32 || info.Shape.Length != 2 || info.Shape[0] != rows)
            throw new InvalidDataException($"{path}: tensor '{name}' must be F32 [{rows}, vocab], got {info.DType} {info.ShapeText}.");
        return (MemoryMarshal.Cast<byte, float>(file.GetBytes(info)).ToArray(), (int)info.Shape[1]);
    }

    private static TensorInfo Get(SafetensorsFile file, string path, string name) =>
        file.Tensors.TryGetValue(name, out TensorInfo? info) ? info : throw new InvalidDataException($"{path}: missing tensor '{name}'.");
}
