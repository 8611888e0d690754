using System.Text.Json;
using System.Text.Json.Nodes;
using Ftransformers.Memory;

namespace Ftransformers.Formats;

/// <summary>
/// A tensor to be written: its header entry and a producer of its bytes, called once when the file is written,
/// so that a converter never holds more than one tensor's bytes.
/// </summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">Its element type.</param>
/// <param name="Shape">Its dimensions.</param>
/// <param name="Produce">Returns its little-endian bytes (exactly shape x element size).</param>
public sealed record TensorToWrite(string Name, TensorDType DType, long[] Shape, Func<byte[]> Produce)
{
    /// <summary>Its size in bytes.</summary>
    public long ByteLength => Shape.Aggregate(1L, (a, b) => a * b) * TensorDTypes.SizeOf(DType);

    /// <summary>A tensor whose bytes are already in memory.</summary>
    public static TensorToWrite FromBytes(string name, TensorDType dtype, long[] shape, byte[] data)
    {
        var tensor = new TensorToWrite(name, dtype, shape, () => data);
        if (tensor.ByteLength != data.Length)
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(", ", shape)}] of {dtype} needs {tensor.ByteLength} bytes, got {data.Length}.", nameof(data));
        return tensor;
    }
}

/// <summary>Builds a safetensors file: add tensors, then write them to a stream or a pinned byte image.</summary>
public sealed class SafetensorsWriter
{
    private readonly List<TensorToWrite> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Adds a tensor whose bytes are produced when the file is written.</summary>
    /// <exception cref="ArgumentException">The name is taken.</exception>
    public void Add(TensorToWrite tensor)
    {
        if (!_names.Add(tensor.Name))
            throw new ArgumentException($"Tensor '{tensor.Name}' was already added.", nameof(tensor));
        _tensors.Add(tensor);
    }

    /// <summary>Adds a tensor from raw little-endian bytes.</summary>
    /// <exception cref="ArgumentException">The byte count does not match shape and dtype, or the name is taken.</exception>
    public void Add(string name, TensorDType dtype, long[] shape, byte[] data) => Add(TensorToWrite.FromBytes(name, dtype, shape, data));

    /// <summary>Adds an F32 tensor.</summary>
    public void AddF32(string name, long[] shape, ReadOnlySpan<float> values) => Add(name, TensorDType.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>Adds an I32 tensor.</summary>
    public void AddI32(string name, long[] shape, ReadOnlySpan<int> values) => Add(name, TensorDType.I32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>
    /// Writes tensors into <paramref name="shards"/> files of about equal tensor counts, named as Hugging Face does
    /// (<c>model-00001-of-00003.safetensors</c>, ...) with a <c>model.safetensors.index.json</c>, or a single
    /// <c>model.safetensors</c> when <paramref name="shards"/> is 1.
    /// </summary>
    public static void WriteCheckpoint(string directory, IReadOnlyList<(string Name, TensorDType DType, long[] Shape, byte[] Data)> tensors, int shards = 1)
    {
        if (shards < 1 || shards > Math.Max(1, tensors.Count))
            throw new ArgumentOutOfRangeException(nameof(shards), shards, $"Shard count must be between 1 and the tensor count ({tensors.Count}).");
        var groups = Enumerable.Range(0, shards)
            .Select(s => tensors.Skip((int)((long)tensors.Count * s / shards)).Take((int)((long)tensors.Count * (s + 1) / shards) - (int)((long)tensors.Count * s / shards))
                .Select(t => TensorToWrite.FromBytes(t.Name, t.DType, t.Shape, t.Data)).ToList())
            .ToList();
        WriteShards(directory, groups, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Splits tensors, in order, into shards of at most <paramref name="maxShardBytes"/> (a larger tensor gets a shard of its own).</summary>
    public static List<List<TensorToWrite>> SplitBySize(IEnumerable<TensorToWrite> tensors, long maxShardBytes)
    {
        var shards = new List<List<TensorToWrite>> { new() };
        long size = 0;
        foreach (TensorToWrite t in tensors)
        {
            if (size > 0 && size + t.ByteLength > maxShardBytes)
            {
                shards.Add([]);
                size = 0;
            }
            shards[^1].Add(t);
            size += t.ByteLength;
        }
        return shards;
    }

    /// <summary>
    /// Writes one safetensors file per shard (a single <c>model.safetensors</c>, or <c>model-0000i-of-0000n</c> files
    /// with <c>model.safetensors.index.json</c>), each header carrying <paramref name="metadata"/>.
    /// </summary>
    public static void WriteShards(string directory, IReadOnlyList<IReadOnlyList<TensorToWrite>> shards, IReadOnlyDictionary<string, string> metadata)
    {
        Directory.CreateDirectory(directory);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int s = 0; s < shards.Count; s++)
        {
            string file = shards.Count == 1 ? "model.safetensors" : $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            var writer = new SafetensorsWriter();
            foreach (TensorToWrite t in shards[s])
            {
                writer.Add(t);
                weightMap[t.Name] = file;
            }
            foreach (var (key, value) in metadata)
                writer.SetMetadata(key, value);
            writer.WriteTo(Path.Combine(directory, file));
        }
        if (shards.Count > 1)
        {
            var index = new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = shards.Sum(s => s.Sum(t => t.ByteLength)) },
                ["weight_map"] = new JsonObject(weightMap.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            };
            File.WriteAllText(Path.Combine(directory, Checkpoint.IndexFileName), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    /// <summary>Sets a string entry of the header's <c>__metadata__</c>.</summary>
    public void SetMetadata(string key, string value) => _metadata[key] = value;

    /// <summary>Total size of the file this writer produces.</summary>
    public long FileLength => 8 + HeaderBytes().Length + _tensors.Sum(t => t.ByteLength);

    /// <summary>Writes the file to a stream, producing each tensor's bytes in turn.</summary>
    public void WriteTo(Stream stream)
    {
        byte[] header = HeaderBytes();
        stream.Write(BitConverter.GetBytes((ulong)header.Length));
        stream.Write(header);
        foreach (TensorToWrite t in _tensors)
        {
            byte[] data = t.Produce();
            if (data.Length != t.ByteLength)
                throw new InvalidOperationException($"Tensor '{t.Name}' produced {data.Length} bytes, its header says {t.ByteLength}.");
            stream.Write(data);
        }
    }

    /// <summary>Writes the file to a path.</summary>
    public void WriteTo(string path)
    {
        using var stream = File.Create(path);
        WriteTo(stream);
    }

    /// <summary>Produces the file image in a pinned array, ready for <see cref="SafetensorsFile.FromImage"/>.</summary>
    internal PinnedArray<byte> ToImage()
    {
        var image = PinnedArray<byte>.Uninitialized(checked((int)FileLength));
        using var stream = new MemoryStream(image.UnsafeArray);
        WriteTo(stream);
        return image;
    }

    /// <summary>
    /// The file image in a pinned array with the header written and the tensor bytes left uninitialized, for a caller
    /// that fills each tensor in place after <see cref="SafetensorsFile.FromImage"/> (no producer is called).
    /// </summary>
    /// <exception cref="InvalidOperationException">The image exceeds the largest array .NET allocates.</exception>
    internal PinnedArray<byte> ToImageWithoutData()
    {
        byte[] header = HeaderBytes();
        long length = 8 + header.Length + _tensors.Sum(t => t.ByteLength);
        if (length > Array.MaxLength)
            throw new InvalidOperationException($"A safetensors image of {length} bytes exceeds the largest array ({Array.MaxLength} bytes); split the tensors over several files.");
        var image = PinnedArray<byte>.Uninitialized((int)length);
        BitConverter.TryWriteBytes(image.Span, (ulong)header.Length);
        header.CopyTo(image.Span[8..]);
        return image;
    }

    private byte[] HeaderBytes()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (_metadata.Count > 0)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in _metadata)
                    json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (TensorToWrite t in _tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", TensorDTypes.Name(t.DType));
                json.WriteStartArray("shape");
                foreach (long d in t.Shape)
                    json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.ByteLength;
            }
            json.WriteEndObject();
        }
        // Pad with spaces so that the data section starts 8-byte aligned, as the reference writer does.
        int padded = (int)((buffer.Length + 7) / 8 * 8);
        byte[] header = new byte[padded];
        buffer.ToArray().CopyTo(header, 0);
        Array.Fill(header, (byte)' ', (int)buffer.Length, padded - (int)buffer.Length);
        return header;
    }
}
