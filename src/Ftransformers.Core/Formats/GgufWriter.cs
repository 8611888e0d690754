using System.Buffers.Binary;
using System.Text;
using Ftransformers.Memory;

namespace Ftransformers.Formats;

/// <summary>
/// Writes GGUF files (version 3, little-endian): metadata, then tensor infos, then each tensor's bytes at an offset
/// aligned to <c>general.alignment</c>. For tests and for files made from the engine's own weights.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValueType Type, object Value, GgufValueType? ElementType)> _metadata = [];
    private readonly List<(string Name, GgmlType Type, long[] Dimensions, byte[] Bytes)> _tensors = [];
    private int _alignment = GgufFile.DefaultAlignment;

    /// <summary>Adds a string.</summary>
    public GgufWriter Add(string key, string value) => Add(key, GgufValueType.String, value);

    /// <summary>Adds a 32-bit unsigned integer (most counts in llama.cpp's metadata).</summary>
    public GgufWriter Add(string key, uint value) => Add(key, GgufValueType.UInt32, value);

    /// <summary>Adds a 32-bit float.</summary>
    public GgufWriter Add(string key, float value) => Add(key, GgufValueType.Float32, value);

    /// <summary>Adds a bool.</summary>
    public GgufWriter Add(string key, bool value) => Add(key, GgufValueType.Bool, value);

    /// <summary>
    /// Adds a value of any scalar type, or an array (<paramref name="value"/> an array of the element type's values;
    /// arrays inside it as <see cref="GgufValue"/>s of type Array).
    /// </summary>
    public GgufWriter Add(string key, GgufValueType type, object value, GgufValueType? elementType = null)
    {
        if (type == GgufValueType.Array && elementType == null)
            throw new ArgumentException("An array needs its element type.", nameof(elementType));
        if (key == "general.alignment")
        {
            long alignment = Convert.ToInt64(value);
            _alignment = alignment > 0 && (alignment & (alignment - 1)) == 0 ? (int)alignment : throw new ArgumentOutOfRangeException(nameof(value), value, "general.alignment must be a power of two.");
        }
        _metadata.Add((key, type, value, elementType));
        return this;
    }

    /// <summary>Adds a tensor; <paramref name="dimensions"/> in ggml's order (row length first).</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] dimensions, byte[] bytes)
    {
        (int values, int blockBytes) = GgmlTypes.Block(type) ?? throw new ArgumentException($"Unknown ggml type {type}.", nameof(type));
        long expected = dimensions.Aggregate(1L, (a, b) => a * b) / values * blockBytes;
        if (dimensions[0] % values != 0 || bytes.Length != expected)
            throw new ArgumentException($"Tensor '{name}' of {type} and shape [{string.Join(", ", dimensions)}] takes {expected} bytes, not {bytes.Length}.", nameof(bytes));
        _tensors.Add((name, type, dimensions, bytes));
        return this;
    }

    /// <summary>The file's bytes.</summary>
    public byte[] ToArray()
    {
        var header = new MemoryStream();
        Write(header, BitConverter.GetBytes(GgufFile.Magic));
        WriteUInt32(header, 3);
        WriteUInt64(header, (ulong)_tensors.Count);
        WriteUInt64(header, (ulong)_metadata.Count);
        foreach ((string key, GgufValueType type, object value, GgufValueType? elementType) in _metadata)
        {
            WriteString(header, key);
            WriteUInt32(header, (uint)type);
            WriteValue(header, type, value, elementType);
        }
        long offset = 0;
        var offsets = new List<long>();
        foreach ((string name, GgmlType type, long[] dimensions, byte[] bytes) in _tensors)
        {
            WriteString(header, name);
            WriteUInt32(header, (uint)dimensions.Length);
            foreach (long d in dimensions)
                WriteUInt64(header, (ulong)d);
            WriteUInt32(header, (uint)type);
            WriteUInt64(header, (ulong)offset);
            offsets.Add(offset);
            offset = Align(offset + bytes.Length);
        }
        long dataStart = Align(header.Length);
        var file = new byte[dataStart + offset];
        header.ToArray().CopyTo(file, 0);
        for (int i = 0; i < _tensors.Count; i++)
            _tensors[i].Bytes.CopyTo(file, dataStart + offsets[i]);
        return file;
    }

    /// <summary>Writes the file to <paramref name="path"/>.</summary>
    public void Save(string path) => File.WriteAllBytes(path, ToArray());

    /// <summary>The file in a pinned array, for <see cref="GgufFile"/> to read in place.</summary>
    internal PinnedArray<byte> ToImage() => PinnedArray<byte>.CopyOf(ToArray());

    private long Align(long position) => (position + _alignment - 1) / _alignment * _alignment;

    private static void WriteValue(Stream stream, GgufValueType type, object value, GgufValueType? elementType)
    {
        switch (type)
        {
            case GgufValueType.UInt8: stream.WriteByte(Convert.ToByte(value)); break;
            case GgufValueType.Int8: stream.WriteByte(unchecked((byte)Convert.ToSByte(value))); break;
            case GgufValueType.UInt16: Write(stream, BitConverter.GetBytes(Convert.ToUInt16(value))); break;
            case GgufValueType.Int16: Write(stream, BitConverter.GetBytes(Convert.ToInt16(value))); break;
            case GgufValueType.UInt32: WriteUInt32(stream, Convert.ToUInt32(value)); break;
            case GgufValueType.Int32: Write(stream, BitConverter.GetBytes(Convert.ToInt32(value))); break;
            case GgufValueType.UInt64: WriteUInt64(stream, Convert.ToUInt64(value)); break;
            case GgufValueType.Int64: Write(stream, BitConverter.GetBytes(Convert.ToInt64(value))); break;
            case GgufValueType.Float32: Write(stream, BitConverter.GetBytes(Convert.ToSingle(value))); break;
            case GgufValueType.Float64: Write(stream, BitConverter.GetBytes(Convert.ToDouble(value))); break;
            case GgufValueType.Bool: stream.WriteByte((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(stream, (string)value); break;
            case GgufValueType.Array:
                // An array inside an array comes as a GgufValue that says its own element type.
                if (value is GgufValue inner)
                    (value, elementType) = (inner.Value, inner.ElementType);
                var elements = ((System.Collections.IEnumerable)value).Cast<object>().ToList();
                WriteUInt32(stream, (uint)elementType!.Value);
                WriteUInt64(stream, (ulong)elements.Count);
                foreach (object element in elements)
                    WriteValue(stream, elementType.Value, element, null);
                break;
            default: throw new ArgumentException($"Unknown GGUF value type {type}.", nameof(type));
        }
    }

    private static void WriteString(Stream stream, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        WriteUInt64(stream, (ulong)bytes.Length);
        Write(stream, bytes);
    }

    private static void WriteUInt32(Stream stream, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        stream.Write(bytes);
    }

    private static void WriteUInt64(Stream stream, ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        stream.Write(bytes);
    }

    private static void Write(Stream stream, byte[] bytes) => stream.Write(bytes);
}
