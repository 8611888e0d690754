using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ftransformers.Formats;
using Ftransformers.Kernels;
using Ftransformers.Quantization;

namespace Ftransformers.Model;

/// <summary>
/// Writes a checkpoint in a precision preset: quantized matrices as <c>X.qweight</c> (I8, or U8 nibbles),
/// <c>X.scales</c> (F32 per INT8 row, F16 per INT4 group) and <c>X.mins</c> (F16), Q4_K as its blocks in <c>X.q4_k</c>
/// (U8, GGUF's layout), the rest as stored; the formats go into config.json's
/// <c>quantization_config</c> and every shard's header. Loading the result maps the quantized weights
/// without re-quantizing and computes exactly what quantizing at load computes.
/// </summary>
public static class CheckpointConverter
{
    /// <summary>Part names of INT4 matrices written in row groups (<see cref="Int4FileLayout.RowGroups"/>).</summary>
    public const string RowGroupCodes = "qweight_rg", RowGroupScales = "scales_rg", RowGroupMins = "mins_rg";

    /// <summary>Part name of a Q4_K matrix: its blocks, row after row, as GGUF stores them.</summary>
    public const string Q4KBlocks = "q4_k";

    /// <summary>Part names of Q5_K and Q6_K matrices: their blocks, row after row, as GGUF stores them (kept from a GGUF file).</summary>
    public const string Q5KBlocks = "q5_k", Q6KBlocks = "q6_k";

    /// <summary>The name of a converted tensor's part: <c>a.b.weight</c> → <c>a.b.qweight</c>.</summary>
    public static string PartName(string weightName, string part) =>
        (weightName.EndsWith(".weight", StringComparison.Ordinal) ? weightName[..^".weight".Length] : weightName) + "." + part;

    /// <summary>Header metadata key holding the formats.</summary>
    public const string MetadataKey = "ftransformers.quantization";

    /// <summary>Converts <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <param name="source">An original checkpoint folder (BF16, F32 or FP8).</param>
    /// <param name="destination">The folder to write (created; files of the same names are replaced).</param>
    /// <param name="precision">The formats to convert to.</param>
    /// <param name="maxShardBytes">Largest shard to write.</param>
    /// <param name="progress">Receives one line per tensor written.</param>
    /// <param name="int4Layout">How INT4 matrices of group size 32 are laid out; null: as this CPU's kernels read them.</param>
    /// <exception cref="InvalidDataException">The source is malformed or already converted.</exception>
    public static void Convert(string source, string destination, Precision precision, long maxShardBytes = 5L << 30, Action<string>? progress = null,
        Int4FileLayout? int4Layout = null)
    {
        Int4FileLayout layout = int4Layout ?? Int4FileLayouts.ForThisCpu;
        DeepSeekV3Config config = DeepSeekV3Config.Load(source);
        if (config.ConvertedPrecision != null)
            throw new InvalidDataException($"{source} is already converted ({config.ConvertedPrecision.Describe()}); convert the original checkpoint.");
        if (Path.GetFullPath(source) == Path.GetFullPath(destination))
            throw new ArgumentException("The destination must differ from the source folder.", nameof(destination));
        using Checkpoint checkpoint = Checkpoint.Open(source);
        JsonObject quantization = WriteShards(checkpoint, config, destination, precision, precision, layout, maxShardBytes, progress);

        JsonObject configJson = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        configJson["quantization_config"] = quantization;
        File.WriteAllText(Path.Combine(destination, "config.json"), configJson.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        foreach (string file in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
            if (File.Exists(Path.Combine(source, file)))
                File.Copy(Path.Combine(source, file), Path.Combine(destination, file), overwrite: true);
    }

    /// <summary>
    /// Converts a GGUF file (or the first of a split set) into a checkpoint folder the engine maps in place: as the file
    /// stores it (<paramref name="precision"/> null: its blocks in the parts the loader reads, Q4_0 experts in this CPU's
    /// INT4 layout; the same logits as loading the file), or in a preset (what loading the file in that preset keeps,
    /// the rest quantized). config.json comes from the file's metadata, tokenizer.json and tokenizer_config.json from
    /// the tokenizer it carries (if it carries one).
    /// </summary>
    /// <param name="gguf">The GGUF file.</param>
    /// <param name="destination">The folder to write (created; files of the same names are replaced).</param>
    /// <param name="precision">A preset, or null for the file's own formats.</param>
    /// <param name="maxShardBytes">Largest shard to write.</param>
    /// <param name="progress">Receives one line per tensor written.</param>
    /// <param name="int4Layout">How INT4 matrices a preset makes are laid out; null: as this CPU's kernels read them.</param>
    /// <exception cref="InvalidDataException">The file is malformed, or not DeepSeek-V3's.</exception>
    public static void ConvertGguf(string gguf, string destination, Precision? precision, long maxShardBytes = 5L << 30, Action<string>? progress = null,
        Int4FileLayout? int4Layout = null)
    {
        if (precision == null && int4Layout != null)
            throw new ArgumentException("An INT4 layout applies to a preset; a GGUF converted as stored keeps its Q4_0 experts in this CPU's layout.", nameof(int4Layout));
        (DeepSeekV3Config config, Checkpoint checkpoint) = precision == null ? GgufCheckpoint.Open(gguf) : GgufCheckpoint.Open(gguf, precision);
        using (checkpoint)
        {
            // As stored, every tensor is already in the part the loader maps, and is copied as it is.
            Precision written = precision ?? config.ConvertedPrecision ?? Precision.F32;
            WriteShards(checkpoint, config, destination, precision ?? Precision.F32, written, int4Layout ?? Int4FileLayouts.ForThisCpu, maxShardBytes, progress);
            File.WriteAllText(Path.Combine(destination, "config.json"), (config with { ConvertedPrecision = written }).ToJson());
        }
        using GgufFile file = GgufFile.Open(gguf);
        if (Tokenization.GgufTokenizer.Has(file))
            Tokenization.TokenizerFiles.Write(Tokenization.GgufTokenizer.Read(file), destination);
    }

    // Every tensor of `checkpoint` in `formats` (scale companions aside), in shards whose headers name `written`, which
    // is returned as config.json's quantization_config.
    private static JsonObject WriteShards(Checkpoint checkpoint, DeepSeekV3Config config, string destination, Precision formats, Precision written, Int4FileLayout layout,
        long maxShardBytes, Action<string>? progress)
    {
        var tensors = new List<TensorToWrite>();
        foreach (string name in checkpoint.TensorNames.Where(n => !n.EndsWith("_scale_inv", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            tensors.AddRange(Outputs(checkpoint, config, name, formats.FormatOf(name), formats, layout, progress));
        JsonObject quantization = written.ToJson();
        quantization["quant_method"] = DeepSeekV3Config.ConvertedQuantMethod;
        var metadata = new Dictionary<string, string> { ["format"] = "pt", [MetadataKey] = quantization.ToJsonString() };
        SafetensorsWriter.WriteShards(destination, SafetensorsWriter.SplitBySize(tensors, maxShardBytes), metadata);
        return quantization;
    }

    private static IEnumerable<TensorToWrite> Outputs(Checkpoint checkpoint, DeepSeekV3Config config, string name, WeightFormat format, Precision precision,
        Int4FileLayout layout, Action<string>? progress)
    {
        TensorInfo info = checkpoint.Info(name);
        long[] shape = info.Shape;
        switch (format)
        {
            case WeightFormat.Native:
                yield return Copy(checkpoint, name, progress);
                string scale = name + "_scale_inv";
                if (checkpoint.Contains(scale))
                    yield return Copy(checkpoint, scale, progress);
                break;
            case WeightFormat.Bf16 when info.DType == TensorDType.BF16:
                yield return Copy(checkpoint, name, progress);
                break;
            case WeightFormat.Bf16:
                yield return new TensorToWrite(name, TensorDType.BF16, shape, () =>
                {
                    float[] values = checkpoint.ReadSingle(name, config.Fp8BlockSize);
                    var bits = new ushort[values.Length];
                    BFloat16.FromSingle(values, bits);
                    progress?.Invoke($"{name}: bf16");
                    return MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
                });
                break;
            case WeightFormat.W8A8:
            {
                int rows = (int)shape[0], cols = (int)shape[1];
                var parts = new SharedQuantization<Int8Weights>(2, () => Int8Quantizer.Quantize(checkpoint.ReadSingle(name, config.Fp8BlockSize), rows, cols));
                yield return new TensorToWrite(CheckpointConverter.PartName(name, "qweight"), TensorDType.I8, [rows, cols], () => Report(progress, name, "w8a8", MemoryMarshal.AsBytes(parts.Take().Codes).ToArray()));
                yield return new TensorToWrite(CheckpointConverter.PartName(name, "scales"), TensorDType.F32, [rows], () => MemoryMarshal.AsBytes(parts.Take().Scales).ToArray());
                break;
            }
            case WeightFormat.Q4K:
            {
                int rows = (int)shape[0], cols = (int)shape[1];
                if (cols % KBlockLayout.BlockValues != 0)
                    throw new InvalidDataException($"{name}: Q4_K needs a multiple of {KBlockLayout.BlockValues} columns, and this matrix has {cols}; choose another preset (e.g. w8a8-int4).");
                yield return new TensorToWrite(PartName(name, Q4KBlocks), TensorDType.U8, [rows, KBlockLayout.BytesOf(KBlockFormat.Q4K, 1, cols)],
                    () => Report(progress, name, "q4_k", Q4K(name, checkpoint.ReadSingle(name, config.Fp8BlockSize), rows, cols)));
                break;
            }
            case WeightFormat.Gguf:
                throw new InvalidDataException($"{name}: 'gguf' names a GGUF file's own blocks; a checkpoint is not converted to it (choose a preset, e.g. w8a8-q4_k).");
            case WeightFormat.Int4 when layout == Int4FileLayout.RowGroups && precision.Int4.GroupSize == Int4Weights.BlockSize:
            {
                // Laid out as the row-group kernels read them, so that loading maps them in place.
                int rows = (int)shape[0], cols = (int)shape[1];
                Int4Format int4 = precision.Int4;
                var parts = new SharedQuantization<Int4RowGroups>(int4.Symmetric ? 2 : 3,
                    () => Int4RowGroups.From(Int4Quantizer.Quantize(checkpoint.ReadSingle(name, config.Fp8BlockSize), rows, cols, int4, precision.SearchInt4Scales)));
                (long[] codeShape, long[] scaleShape) = Int4RowGroups.FileShapes(rows, cols);
                yield return new TensorToWrite(PartName(name, RowGroupCodes), TensorDType.U8, codeShape,
                    () => Report(progress, name, int4 + " in row groups", parts.Take().Packed.ToArray()));
                yield return new TensorToWrite(PartName(name, RowGroupScales), TensorDType.F16, scaleShape, () => MemoryMarshal.AsBytes(parts.Take().Scales).ToArray());
                if (!int4.Symmetric)
                    yield return new TensorToWrite(PartName(name, RowGroupMins), TensorDType.F16, scaleShape, () => MemoryMarshal.AsBytes(parts.Take().Mins).ToArray());
                break;
            }
            default:
            {
                int rows = (int)shape[0], cols = (int)shape[1];
                Int4Format int4 = precision.Int4;
                int groups = cols / int4.GroupSize;
                var parts = new SharedQuantization<Int4Weights>(int4.Symmetric ? 2 : 3,
                    () => Int4Quantizer.Quantize(checkpoint.ReadSingle(name, config.Fp8BlockSize), rows, cols, int4, precision.SearchInt4Scales));
                yield return new TensorToWrite(CheckpointConverter.PartName(name, "qweight"), TensorDType.U8, [rows, cols / 2], () => Report(progress, name, int4.ToString(), parts.Take().Packed.ToArray()));
                yield return new TensorToWrite(CheckpointConverter.PartName(name, "scales"), TensorDType.F16, [rows, groups], () => MemoryMarshal.AsBytes(parts.Take().Scales).ToArray());
                if (!int4.Symmetric)
                    yield return new TensorToWrite(CheckpointConverter.PartName(name, "mins"), TensorDType.F16, [rows, groups], () => MemoryMarshal.AsBytes(parts.Take().Mins).ToArray());
                break;
            }
        }
    }

    // Q4_K blocks of a matrix, an error naming it when its values cannot be held.
    private static byte[] Q4K(string name, float[] values, int rows, int cols)
    {
        try
        {
            return Q4KQuantizer.Quantize(values, rows, cols);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{name}: {e.Message}", e);
        }
    }

    private static TensorToWrite Copy(Checkpoint checkpoint, string name, Action<string>? progress)
    {
        TensorInfo info = checkpoint.Info(name);
        return new TensorToWrite(name, info.DType, info.Shape, () => Report(progress, name, "copied", checkpoint.Bytes(name).ToArray()));
    }

    private static byte[] Report(Action<string>? progress, string name, string what, byte[] bytes)
    {
        progress?.Invoke($"{name}: {what}");
        return bytes;
    }

    // One quantization feeds several written tensors (codes, scales, mins); it is dropped after the last of them.
    private sealed class SharedQuantization<T>(int parts, Func<T> quantize) where T : class
    {
        private T? _value;
        private int _remaining = parts;

        public T Take()
        {
            T value = _value ??= quantize();
            if (--_remaining == 0)
                _value = null;
            return value;
        }
    }
}
