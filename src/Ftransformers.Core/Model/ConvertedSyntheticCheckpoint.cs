using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Ftransformers.Formats;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>
/// Random-weight checkpoints already in the layout <c>convert</c> writes on this CPU (<c>X.qweight</c>, <c>X.scales</c>,
/// <c>X.mins</c>, with INT4 matrices in row groups where the row-group kernels run), made directly as codes and scales,
/// so that the model computes from its image in place: a model at DeepSeek-V3's real widths is made in seconds rather
/// than quantized for minutes. Codes are uniform and scales fixed per tensor so that each weight has variance about
/// 1/fan_in, as in <see cref="SyntheticCheckpoint"/>; embeddings, norms and the router are BF16.
/// Each block of each tensor is seeded from the seed, the tensor's name and the block's index, so the model does
/// not depend on the number of threads that made it.
/// </summary>
public static class ConvertedSyntheticCheckpoint
{
    // Work items are blocks of this many bytes: small enough to balance threads over one huge tensor.
    private const int BlockBytes = 8 << 20;

    private enum Fill { Bf16Matrix, Bf16Norm, Bf16Bias, Int8Codes, Int4Codes, Q4KBlocks, Constant }

    private sealed record Part(string Name, TensorDType DType, long[] Shape, Fill Fill, float Value)
    {
        public long ByteLength => Shape.Aggregate(1L, (a, b) => a * b) * TensorDTypes.SizeOf(DType);
    }

    /// <summary>
    /// Builds the checkpoint in memory, in safetensors images of at most <paramref name="maxFileBytes"/> (a larger
    /// tensor gets an image of its own), in the formats of <paramref name="config"/>'s
    /// <see cref="DeepSeekV3Config.ConvertedPrecision"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The config is not marked converted, or a quantized width does not fit its format.</exception>
    public static Checkpoint CreateInMemory(DeepSeekV3Config config, int seed, long maxFileBytes = 1L << 30, Int4FileLayout? int4Layout = null)
    {
        Precision precision = config.ConvertedPrecision
            ?? throw new ArgumentException("The config has no ConvertedPrecision; use SyntheticCheckpoint for an unconverted model.", nameof(config));
        Int4FileLayout layout = int4Layout ?? Int4FileLayouts.ForThisCpu;
        List<Part> parts = [.. config.TensorShapes().SelectMany(t => Parts(t.Name, t.Shape, precision, layout))];
        JsonObject quantization = precision.ToJson();
        quantization["quant_method"] = DeepSeekV3Config.ConvertedQuantMethod;

        var files = new List<SafetensorsFile>();
        try
        {
            var shards = SafetensorsWriter.SplitBySize(parts.Select(p => new TensorToWrite(p.Name, p.DType, p.Shape, () => throw new InvalidOperationException("Filled in place."))), maxFileBytes);
            for (int s = 0; s < shards.Count; s++)
            {
                var writer = new SafetensorsWriter();
                foreach (TensorToWrite t in shards[s])
                    writer.Add(t);
                writer.SetMetadata("format", "pt");
                writer.SetMetadata(CheckpointConverter.MetadataKey, quantization.ToJsonString());
                files.Add(SafetensorsFile.FromImage($"synthetic(seed {seed}) file {s + 1} of {shards.Count}", writer.ToImageWithoutData()));
            }
        }
        catch
        {
            foreach (SafetensorsFile f in files)
                f.Dispose();
            throw;
        }
        Checkpoint checkpoint = Checkpoint.FromFiles($"synthetic(seed {seed}, {precision.Describe()})", files);
        try
        {
            FillAll(checkpoint, parts, seed);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
        return checkpoint;
    }

    private static IEnumerable<Part> Parts(string name, long[] shape, Precision precision, Int4FileLayout layout)
    {
        if (shape.Length == 1)
        {
            bool bias = name.EndsWith("e_score_correction_bias", StringComparison.Ordinal);
            yield return new Part(name, TensorDType.BF16, shape, bias ? Fill.Bf16Bias : Fill.Bf16Norm, 0);
            yield break;
        }
        long rows = shape[0], cols = shape[1];
        float bound = MathF.Sqrt(3f / cols);
        switch (precision.FormatOf(name))
        {
            case WeightFormat.Native or WeightFormat.Bf16:
                yield return new Part(name, TensorDType.BF16, shape, Fill.Bf16Matrix, bound);
                break;
            case WeightFormat.W8A8:
                yield return new Part(CheckpointConverter.PartName(name, "qweight"), TensorDType.I8, shape, Fill.Int8Codes, 0);
                yield return new Part(CheckpointConverter.PartName(name, "scales"), TensorDType.F32, [rows], Fill.Constant, bound / 127);
                break;
            case WeightFormat.Q4K:
                if (cols % Kernels.KBlockLayout.BlockValues != 0)
                    throw new ArgumentException($"Tensor '{name}' has {cols} columns, not a multiple of Q4_K's block of {Kernels.KBlockLayout.BlockValues}.", nameof(precision));
                yield return new Part(CheckpointConverter.PartName(name, CheckpointConverter.Q4KBlocks), TensorDType.U8, [rows, Kernels.KBlockLayout.BytesOf(Kernels.KBlockFormat.Q4K, 1, cols)], Fill.Q4KBlocks, bound);
                break;
            case WeightFormat.Gguf:
                throw new ArgumentException($"Tensor '{name}': 'gguf' names a GGUF file's own blocks; synthetic models are made in a preset's formats.", nameof(precision));
            default:
            {
                Int4Format format = precision.Int4;
                if (cols % format.GroupSize != 0 || cols % Int4Weights.BlockSize != 0)
                    throw new ArgumentException($"Tensor '{name}' has {cols} columns, not a multiple of the {format} group and block size.", nameof(precision));
                long groups = cols / format.GroupSize;
                // Row groups hold uniform random codes and constant scales too, sixteen rows interleaved (padding rows included);
                // the codes are drawn for the row-group tensors, so the model differs from the rows layout's.
                bool rowGroups = layout == Int4FileLayout.RowGroups && format.GroupSize == Int4Weights.BlockSize;
                (long[] groupCodes, long[] groupScales) = Int4RowGroups.FileShapes((int)rows, (int)cols);
                long[] codeShape = rowGroups ? groupCodes : [rows, cols / 2];
                long[] scaleShape = rowGroups ? groupScales : [rows, groups];
                string Name(string rowsPart, string groupsPart) => CheckpointConverter.PartName(name, rowGroups ? groupsPart : rowsPart);
                yield return new Part(Name("qweight", CheckpointConverter.RowGroupCodes), TensorDType.U8, codeShape, Fill.Int4Codes, 0);
                if (format.Symmetric)
                {
                    // Codes 0..15 stand for code - 8: the range [-8s, 7s] is about [-bound, bound].
                    yield return new Part(Name("scales", CheckpointConverter.RowGroupScales), TensorDType.F16, scaleShape, Fill.Constant, bound / 8);
                }
                else
                {
                    yield return new Part(Name("scales", CheckpointConverter.RowGroupScales), TensorDType.F16, scaleShape, Fill.Constant, 2 * bound / 15);
                    yield return new Part(Name("mins", CheckpointConverter.RowGroupMins), TensorDType.F16, scaleShape, Fill.Constant, -bound);
                }
                break;
            }
        }
    }

    private static unsafe void FillAll(Checkpoint checkpoint, List<Part> parts, int seed)
    {
        var blocks = new List<(Part Part, long Start, long Length, long Index)>();
        foreach (Part p in parts)
        {
            // Q4_K tensors are filled in whole blocks of 144 bytes.
            long step = p.Fill == Fill.Q4KBlocks ? BlockBytes / Kernels.KBlockLayout.Q4KBlockBytes * Kernels.KBlockLayout.Q4KBlockBytes : BlockBytes;
            for (long start = 0, index = 0; start < p.ByteLength; start += step, index++)
                blocks.Add((p, start, Math.Min(step, p.ByteLength - start), index));
        }
        Parallel.ForEach(blocks, block =>
        {
            byte* data = checkpoint.Pointer(block.Part.Name) + block.Start;
            ulong state = ((ulong)(uint)seed << 32) ^ SyntheticCheckpoint.Fnv1a(block.Part.Name) ^ (ulong)block.Index * 0xD1B54A32D192ED03UL;
            FillBlock(block.Part, new Span<byte>(data, (int)block.Length), new SyntheticCheckpoint.SplitMix64(state));
        });
    }

    private static void FillBlock(Part part, Span<byte> bytes, SyntheticCheckpoint.SplitMix64 rng)
    {
        switch (part.Fill)
        {
            case Fill.Int4Codes:
                // Every byte value is two uniform nibbles.
                RandomBytes(bytes, ref rng);
                break;
            case Fill.Q4KBlocks:
                // Uniform codes under the largest 6-bit scale and min (every packed scale byte 0xFF) with d and dmin
                // set so that values span about [-bound, bound], as the INT4 tensors do.
                RandomBytes(bytes, ref rng);
                for (int at = 0; at < bytes.Length; at += Kernels.KBlockLayout.Q4KBlockBytes)
                {
                    MemoryMarshal.Write(bytes[at..], (Half)(2 * part.Value / 15 / 63));
                    MemoryMarshal.Write(bytes[(at + 2)..], (Half)(part.Value / 63));
                    bytes.Slice(at + 4, 12).Fill(0xFF);
                }
                break;
            case Fill.Int8Codes:
                RandomBytes(bytes, ref rng);
                // Uniform over the 255 symmetric codes -127..127 (the quantizer never writes -128).
                foreach (ref byte b in bytes)
                    b = (byte)(sbyte)(((b * 255) >> 8) - 127);
                break;
            case Fill.Constant when part.DType == TensorDType.F16:
                MemoryMarshal.Cast<byte, Half>(bytes).Fill((Half)part.Value);
                break;
            case Fill.Constant:
                MemoryMarshal.Cast<byte, float>(bytes).Fill(part.Value);
                break;
            default:
                (float center, float halfWidth) = part.Fill switch
                {
                    Fill.Bf16Matrix => (0f, part.Value),
                    Fill.Bf16Bias => (0f, 0.1f),
                    _ => (1f, 0.2f),
                };
                foreach (ref ushort bits in MemoryMarshal.Cast<byte, ushort>(bytes))
                    bits = (ushort)(BitConverter.SingleToUInt32Bits(center + rng.NextSymmetric() * halfWidth) >> 16);
                break;
        }
    }

    private static void RandomBytes(Span<byte> bytes, ref SyntheticCheckpoint.SplitMix64 rng)
    {
        Span<ulong> words = MemoryMarshal.Cast<byte, ulong>(bytes);
        foreach (ref ulong w in words)
            w = rng.Next();
        Span<byte> tail = bytes[(words.Length * sizeof(ulong))..];
        ulong last = rng.Next();
        for (int i = 0; i < tail.Length; i++)
            tail[i] = (byte)(last >> (8 * i));
    }
}
