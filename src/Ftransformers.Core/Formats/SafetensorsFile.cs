using System.Text.Json;
using Ftransformers.Memory;

namespace Ftransformers.Formats;

/// <summary>
/// A safetensors file mapped into memory: the header is parsed and validated once, tensor bytes are
/// read in place through the mapping and never copied into managed memory.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    // Headers of real checkpoints are a few hundred KiB; anything far larger is a corrupt length field.
    private const long MaxHeaderBytes = 256L << 20;

    private readonly MappedFile _file;
    private readonly long _dataStart;
    private readonly Dictionary<string, TensorInfo> _tensors;

    /// <summary>Where the file came from, used in every error message.</summary>
    public string Path { get; }

    /// <summary>The tensors of the file, by name.</summary>
    public IReadOnlyDictionary<string, TensorInfo> Tensors => _tensors;

    /// <summary>The free-form string metadata of the header (<c>__metadata__</c>).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(MappedFile file)
    {
        Path = file.Path;
        _file = file;
        try
        {
            if (file.Length < 8)
                throw new InvalidDataException($"{file.Path}: file is truncated ({file.Length} bytes; a safetensors file starts with an 8-byte header length).");
            (_tensors, Metadata, _dataStart) = ParseHeader(file.Path, file.Bytes(0, long.MaxValue), file.Length);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    // Tensors of another format's file, already validated, under the names and shapes they are loaded by.
    private SafetensorsFile(MappedFile file, long dataStart, Dictionary<string, TensorInfo> tensors)
    {
        Path = file.Path;
        _file = file;
        _dataStart = dataStart;
        _tensors = tensors;
        Metadata = new Dictionary<string, string>();
    }

    /// <summary>
    /// Tensors of another format's mapped file (a GGUF's blocks) seen as safetensors entries, offsets from
    /// <paramref name="dataStart"/>; the view owns the mapping.
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor lies outside the file.</exception>
    internal static SafetensorsFile View(MappedFile file, long dataStart, IEnumerable<TensorInfo> tensors)
    {
        var byName = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        foreach (TensorInfo t in tensors)
        {
            if (t.Offset < 0 || t.ByteLength < 0 || dataStart + t.Offset + t.ByteLength > file.Length)
                throw new InvalidDataException($"{file.Path}: tensor '{t.Name}' ({t.ByteLength} bytes at {dataStart + t.Offset}) lies outside the file ({file.Length} bytes).");
            if (!byName.TryAdd(t.Name, t))
                throw new InvalidDataException($"{file.Path}: tensor '{t.Name}' is named twice.");
        }
        return new SafetensorsFile(file, dataStart, byName);
    }

    /// <summary>Maps a safetensors file read-only and validates its header.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is truncated or its header is malformed.</exception>
    public static SafetensorsFile Open(string path) => new(MappedFile.Open(path, "Safetensors"));

    /// <summary>Reads a safetensors image held in memory, from a pinned copy of <paramref name="bytes"/>.</summary>
    /// <param name="name">A name for messages.</param>
    /// <param name="bytes">The file's bytes.</param>
    public static SafetensorsFile FromBytes(string name, ReadOnlySpan<byte> bytes) => FromImage(name, PinnedArray<byte>.CopyOf(bytes));

    /// <summary>Reads an image this file then owns (synthetic models fill their tensors in place).</summary>
    internal static SafetensorsFile FromImage(string name, PinnedArray<byte> image) => new(MappedFile.FromImage(name, image));

    /// <summary>Whether the file holds a tensor of this name.</summary>
    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>The raw bytes of a tensor, read in place.</summary>
    public ReadOnlySpan<byte> GetBytes(TensorInfo tensor) => new(GetPointer(tensor), checked((int)tensor.ByteLength));

    /// <summary>Address of a tensor's first byte; valid until the file is disposed.</summary>
    internal byte* GetPointer(TensorInfo tensor)
    {
        return _file.Pointer + _dataStart + tensor.Offset;
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        _file.Dispose();
    }

    private static (Dictionary<string, TensorInfo>, IReadOnlyDictionary<string, string>, long) ParseHeader(string path, ReadOnlySpan<byte> file, long fileLength)
    {
        ulong headerLength = BitConverter.ToUInt64(file[..8]);
        if (headerLength > MaxHeaderBytes || 8 + (long)headerLength > fileLength)
            throw new InvalidDataException($"{path}: header length {headerLength} runs past the end of the file ({fileLength} bytes); the file is truncated or not safetensors.");
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(file.Slice(8, (int)headerLength).ToArray());
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: header is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: header must be a JSON object.");
            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__")
                {
                    if (entry.Value.ValueKind == JsonValueKind.Object)
                        foreach (JsonProperty m in entry.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors.Add(entry.Name, ParseTensor(path, entry, dataLength));
            }
            TensorRanges.CheckNoOverlap(path, tensors.Values.Select(t => (t.Name, t.Offset, t.ByteLength)));
            return (tensors, metadata, dataStart);
        }
    }

    private static TensorInfo ParseTensor(string path, JsonProperty entry, long dataLength)
    {
        string name = entry.Name;
        JsonElement e = entry.Value;
        string where = $"{path}: tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{where}: entry must be an object.");
        if (!e.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{where}: missing 'dtype'.");
        string dtypeText = dtypeElement.GetString()!;
        if (!TensorDTypes.TryParse(dtypeText, out TensorDType dtype))
            throw new InvalidDataException($"{where}: unknown dtype '{dtypeText}'.");
        if (!e.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{where}: missing 'shape'.");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (JsonElement d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new InvalidDataException($"{where}: shape must hold non-negative integers, got {shapeElement.GetRawText()}.");
            shape[i++] = dim;
        }
        if (!e.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw new InvalidDataException($"{where}: 'data_offsets' must be [begin, end].");
        if (begin < 0 || end < begin || end > dataLength)
            throw new InvalidDataException($"{where}: data_offsets [{begin}, {end}] lie outside the data section ({dataLength} bytes); the file is truncated or corrupt.");
        var info = new TensorInfo(name, dtype, shape, begin, end - begin);
        long expected;
        try
        {
            expected = checked(info.ElementCount * TensorDTypes.SizeOf(dtype));
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{where}: shape {info.ShapeText} is too large.");
        }
        if (expected != info.ByteLength)
            throw new InvalidDataException($"{where}: shape {info.ShapeText} of {dtypeText} needs {expected} bytes but data_offsets give {info.ByteLength}.");
        return info;
    }
}
