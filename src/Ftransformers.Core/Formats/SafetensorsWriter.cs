using System.Text;
using System.Text.Json;

namespace Ftransformers.Formats;

/// <summary>Builds a safetensors file: add tensors, then write them to a stream or a pinned byte image.</summary>
public sealed class SafetensorsWriter
{
    private readonly List<(string Name, TensorDType DType, long[] Shape, byte[] Data)> _tensors = [];
    private readonly Dictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Adds a tensor from raw little-endian bytes.</summary>
    /// <exception cref="ArgumentException">The byte count does not match shape and dtype, or the name is taken.</exception>
    public void Add(string name, TensorDType dtype, long[] shape, byte[] data)
    {
        long expected = shape.Aggregate(1L, (a, b) => a * b) * TensorDTypes.SizeOf(dtype);
        if (expected != data.Length)
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(", ", shape)}] of {dtype} needs {expected} bytes, got {data.Length}.", nameof(data));
        if (_tensors.Any(t => t.Name == name))
            throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        _tensors.Add((name, dtype, shape, data));
    }

    /// <summary>Adds an F32 tensor.</summary>
    public void AddF32(string name, long[] shape, ReadOnlySpan<float> values) => Add(name, TensorDType.F32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>Adds an I32 tensor.</summary>
    public void AddI32(string name, long[] shape, ReadOnlySpan<int> values) => Add(name, TensorDType.I32, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray());

    /// <summary>
    /// Writes tensors into <paramref name="shards"/> files named as Hugging Face does
    /// (<c>model-00001-of-00003.safetensors</c>, ...) with a <c>model.safetensors.index.json</c>,
    /// or a single <c>model.safetensors</c> when <paramref name="shards"/> is 1.
    /// </summary>
    public static void WriteCheckpoint(string directory, IReadOnlyList<(string Name, TensorDType DType, long[] Shape, byte[] Data)> tensors, int shards = 1)
    {
        if (shards < 1 || shards > Math.Max(1, tensors.Count))
            throw new ArgumentOutOfRangeException(nameof(shards), shards, $"Shard count must be between 1 and the tensor count ({tensors.Count}).");
        Directory.CreateDirectory(directory);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int s = 0; s < shards; s++)
        {
            string file = shards == 1 ? "model.safetensors" : $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var writer = new SafetensorsWriter();
            // Contiguous runs of tensors per shard, as the reference exporter splits them.
            int begin = (int)((long)tensors.Count * s / shards), end = (int)((long)tensors.Count * (s + 1) / shards);
            for (int i = begin; i < end; i++)
            {
                writer.Add(tensors[i].Name, tensors[i].DType, tensors[i].Shape, tensors[i].Data);
                weightMap[tensors[i].Name] = file;
            }
            writer.SetMetadata("format", "pt");
            writer.WriteTo(Path.Combine(directory, file));
        }
        if (shards > 1)
        {
            var index = new System.Text.Json.Nodes.JsonObject
            {
                ["metadata"] = new System.Text.Json.Nodes.JsonObject { ["total_size"] = tensors.Sum(t => (long)t.Data.Length) },
                ["weight_map"] = new System.Text.Json.Nodes.JsonObject(weightMap.Select(kv => KeyValuePair.Create(kv.Key, (System.Text.Json.Nodes.JsonNode?)kv.Value))),
            };
            File.WriteAllText(Path.Combine(directory, Checkpoint.IndexFileName), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    /// <summary>Sets a string entry of the header's <c>__metadata__</c>.</summary>
    public void SetMetadata(string key, string value) => _metadata[key] = value;

    /// <summary>Total size of the file this writer produces.</summary>
    public long FileLength => 8 + HeaderBytes().Length + _tensors.Sum(t => (long)t.Data.Length);

    /// <summary>Writes the file to a stream.</summary>
    public void WriteTo(Stream stream)
    {
        byte[] header = HeaderBytes();
        stream.Write(BitConverter.GetBytes((ulong)header.Length));
        stream.Write(header);
        foreach (var t in _tensors)
            stream.Write(t.Data);
    }

    /// <summary>Writes the file to a path.</summary>
    public void WriteTo(string path)
    {
        using var stream = File.Create(path);
        WriteTo(stream);
    }

    /// <summary>Produces the file image in a pinned array, ready for <see cref="SafetensorsFile.FromPinnedBytes"/>.</summary>
    public byte[] ToPinnedBytes()
    {
        byte[] image = GC.AllocateUninitializedArray<byte>(checked((int)FileLength), pinned: true);
        using var stream = new MemoryStream(image);
        WriteTo(stream);
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
            foreach (var t in _tensors)
            {
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", TensorDTypes.Name(t.DType));
                json.WriteStartArray("shape");
                foreach (long d in t.Shape)
                    json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.Length;
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
