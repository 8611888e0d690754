using System.Text;
using System.Text.RegularExpressions;
using Ftransformers.Memory;

namespace Ftransformers.Formats;

/// <summary>
/// A GGUF file (format versions 2 and 3, little-endian), or the set of files of a split model opened through its first
/// file (<c>NAME-00001-of-00009.gguf</c>), mapped into memory: metadata and tensor infos are parsed and checked once,
/// tensor bytes are read in place. Every read is bounds-checked, so a truncated or lying file is an
/// <see cref="InvalidDataException"/> naming the file and the key or tensor at fault, never a crash.
/// </summary>
public sealed unsafe partial class GgufFile : IDisposable
{
    /// <summary>"GGUF" as the first four bytes.</summary>
    public const uint Magic = 0x46554747;

    /// <summary>Alignment of tensor data when <c>general.alignment</c> is absent.</summary>
    public const int DefaultAlignment = 32;

    private const int MaxDimensions = 4, MaxArrayNesting = 8, MaxArrayElements = 1 << 22;

    private readonly MappedFile[] _parts;
    private readonly long[] _dataStarts;
    private readonly Dictionary<string, GgufTensor> _tensors;
    private bool _mappingsGiven;

    private GgufFile(MappedFile[] parts)
    {
        _parts = parts;
        Path = parts[0].Path;
        _dataStarts = new long[parts.Length];
        _tensors = new Dictionary<string, GgufTensor>(StringComparer.Ordinal);
        try
        {
            Dictionary<string, GgufValue>? metadata = null;
            for (int p = 0; p < parts.Length; p++)
            {
                (uint version, Dictionary<string, GgufValue> partMetadata, List<GgufTensor> tensors, long dataStart) = Parse(parts[p], p);
                if (p == 0)
                {
                    Version = version;
                    metadata = partMetadata;
                    CheckSplit(partMetadata, parts.Length);
                }
                else if (partMetadata.TryGetValue("split.no", out GgufValue? no) && no.AsInt64() != p)
                    throw new InvalidDataException($"{parts[p].Path}: 'split.no' is {no.AsInt64()}, but the file name makes it part {p + 1} (split.no {p}).");
                _dataStarts[p] = dataStart;
                foreach (GgufTensor tensor in tensors)
                    if (!_tensors.TryAdd(tensor.Name, tensor))
                        throw new InvalidDataException($"{parts[p].Path}: tensor '{tensor.Name}' is also in {parts[_tensors[tensor.Name].Part].Path}.");
            }
            Metadata = metadata!;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The file opened (the first of a split set).</summary>
    public string Path { get; }

    /// <summary>The format version (2 or 3).</summary>
    public uint Version { get; }

    /// <summary>The metadata, by key (of the first file, for a split set).</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }

    /// <summary>The tensors of every file, by name.</summary>
    public IReadOnlyDictionary<string, GgufTensor> Tensors => _tensors;

    /// <summary>Files in the set (1 for a single file).</summary>
    public int PartCount => _parts.Length;

    /// <summary>Opens a GGUF file, or a split set through its first file; the other files are found beside it.</summary>
    /// <exception cref="FileNotFoundException">The file, or a file of its set, does not exist.</exception>
    /// <exception cref="InvalidDataException">A file is truncated, malformed, or not the first of its set.</exception>
    public static GgufFile Open(string path)
    {
        var parts = new List<MappedFile>();
        try
        {
            foreach (string part in PartPaths(path))
                parts.Add(MappedFile.Open(part, "GGUF"));
            return new GgufFile([.. parts]);
        }
        catch
        {
            foreach (MappedFile part in parts)
                part.Dispose();
            throw;
        }
    }

    /// <summary>Reads GGUF images held in memory (one per file of a set), taking ownership of them.</summary>
    internal static GgufFile FromImages(string name, IReadOnlyList<PinnedArray<byte>> images) =>
        new([.. images.Select((image, i) => MappedFile.FromImage(images.Count == 1 ? name : $"{name} part {i + 1}", image))]);

    /// <summary>The bytes of <paramref name="tensor"/> (under 2 GiB; larger ones through <see cref="GetPointer"/>).</summary>
    public ReadOnlySpan<byte> GetBytes(GgufTensor tensor) => new(GetPointer(tensor), checked((int)tensor.ByteLength));

    /// <summary>The first byte of <paramref name="tensor"/>, valid until disposal.</summary>
    internal byte* GetPointer(GgufTensor tensor) => _parts[tensor.Part].Pointer + _dataStarts[tensor.Part] + tensor.Offset;

    /// <summary>
    /// Hands the files' mappings to views that name <paramref name="tensors"/> (each in a file of the set, its offset
    /// from that file's data section), so that a checkpoint reads them in place; this object then no longer unmaps them.
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor lies outside its file.</exception>
    internal SafetensorsFile[] GiveMappings(IReadOnlyList<(int Part, TensorInfo Tensor)> tensors)
    {
        ObjectDisposedException.ThrowIf(_mappingsGiven, this);
        var views = new SafetensorsFile[_parts.Length];
        for (int p = 0; p < _parts.Length; p++)
            views[p] = SafetensorsFile.View(_parts[p], _dataStarts[p], tensors.Where(t => t.Part == p).Select(t => t.Tensor));
        _mappingsGiven = true;
        return views;
    }

    /// <summary>Unmaps the files (unless <see cref="GiveMappings"/> handed them on).</summary>
    public void Dispose()
    {
        if (_mappingsGiven)
            return;
        foreach (MappedFile part in _parts)
            part.Dispose();
    }

    [GeneratedRegex(@"^(?<prefix>.*)-(?<number>\d{5})-of-(?<count>\d{5})\.gguf$")]
    private static partial Regex SplitName();

    // A split set is opened through its first file; the others follow its naming.
    private static IEnumerable<string> PartPaths(string path)
    {
        Match match = SplitName().Match(path);
        if (!match.Success)
            return [path];
        int number = int.Parse(match.Groups["number"].Value), count = int.Parse(match.Groups["count"].Value);
        if (number != 1)
            throw new InvalidDataException($"{path} is file {number} of a split set of {count}; open the first one ({match.Groups["prefix"].Value}-00001-of-{match.Groups["count"].Value}.gguf).");
        if (count < 1)
            throw new InvalidDataException($"{path}: a split set of {count} files.");
        return Enumerable.Range(1, count).Select(n => $"{match.Groups["prefix"].Value}-{n:D5}-of-{match.Groups["count"].Value}.gguf");
    }

    private void CheckSplit(Dictionary<string, GgufValue> metadata, int parts)
    {
        long count = metadata.TryGetValue("split.count", out GgufValue? value) ? value.AsInt64() : 1;
        if (count != parts)
            throw new InvalidDataException(parts == 1
                ? $"{Path}: 'split.count' is {count}, but the file is not named as the first of a split set (NAME-00001-of-{count:D5}.gguf)."
                : $"{Path}: 'split.count' is {count}, but the file names make a set of {parts}.");
    }

    private static (uint Version, Dictionary<string, GgufValue> Metadata, List<GgufTensor> Tensors, long DataStart) Parse(MappedFile file, int part)
    {
        var reader = new Reader(file.Bytes(0, long.MaxValue), file.Path);
        uint magic = reader.UInt32("the magic number");
        if (magic != Magic)
            throw new InvalidDataException($"{file.Path}: not a GGUF file (it starts with 0x{magic:X8}, not \"GGUF\").");
        uint version = reader.UInt32("the version");
        if (version is not (2 or 3))
            throw new InvalidDataException(BinaryPrimitivesReverse(version) is 2 or 3
                ? $"{file.Path}: a big-endian GGUF file; only little-endian files are supported."
                : $"{file.Path}: GGUF version {version} is not supported (versions 2 and 3 are; version 1 files must be converted again).");
        ulong tensorCount = reader.UInt64("the tensor count");
        ulong metadataCount = reader.UInt64("the metadata count");
        // Each metadata entry takes at least 12 bytes and each tensor info 24: counts beyond that are lies.
        if (metadataCount > (ulong)reader.Remaining / 12)
            throw new InvalidDataException($"{file.Path}: the metadata count {metadataCount} is more than the file's {file.Length} bytes can hold.");

        var metadata = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        for (ulong i = 0; i < metadataCount; i++)
        {
            string key = reader.String($"the key of metadata entry {i}");
            var type = (GgufValueType)reader.UInt32($"the type of metadata '{key}'");
            GgufValue value = reader.Value(type, $"metadata '{key}'", 0);
            if (!metadata.TryAdd(key, value))
                throw new InvalidDataException($"{file.Path}: metadata key '{key}' appears twice.");
        }
        if (tensorCount > (ulong)reader.Remaining / 24)
            throw new InvalidDataException($"{file.Path}: the tensor count {tensorCount} is more than the file's {file.Length} bytes can hold.");

        long alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out GgufValue? align))
        {
            alignment = align.Value is long or ulong ? align.AsInt64() : 0;
            if (alignment <= 0 || (alignment & (alignment - 1)) != 0 || alignment > 1 << 20)
                throw new InvalidDataException($"{file.Path}: metadata 'general.alignment' is {align.Value}; it must be a power of two up to 1 MiB.");
        }

        var infos = new List<(string Name, GgmlType Type, long[] Dimensions, long Offset, long Bytes)>();
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = reader.String($"the name of tensor {i}");
            string where = $"tensor '{name}'";
            uint dimensions = reader.UInt32($"the dimension count of {where}");
            if (dimensions is 0 or > MaxDimensions)
                throw new InvalidDataException($"{file.Path}: {where} has {dimensions} dimensions; ggml tensors have 1 to {MaxDimensions}.");
            var shape = new long[dimensions];
            for (int d = 0; d < dimensions; d++)
            {
                ulong size = reader.UInt64($"dimension {d} of {where}");
                if (size is 0 or > long.MaxValue)
                    throw new InvalidDataException($"{file.Path}: {where} has dimension {d} of size {size}.");
                shape[d] = (long)size;
            }
            uint typeNumber = reader.UInt32($"the type of {where}");
            var type = (GgmlType)typeNumber;
            if (GgmlTypes.Block(type) is not var (values, bytes))
                throw new InvalidDataException($"{file.Path}: {where} has ggml type {typeNumber}, which this reader does not know.");
            if (shape[0] % values != 0)
                throw new InvalidDataException($"{file.Path}: {where} has rows of {shape[0]} values, not a multiple of {type}'s blocks of {values}.");
            long length;
            try
            {
                length = checked(shape.Aggregate(1L, (a, b) => checked(a * b)) / values * bytes);
            }
            catch (OverflowException)
            {
                throw new InvalidDataException($"{file.Path}: {where} of shape [{string.Join(", ", shape)}] is larger than any file.");
            }
            ulong offset = reader.UInt64($"the offset of {where}");
            if (offset % (ulong)alignment != 0)
                throw new InvalidDataException($"{file.Path}: {where} starts at data offset {offset}, not a multiple of the alignment {alignment}.");
            infos.Add((name, type, shape, (long)Math.Min(offset, long.MaxValue), length));
        }

        long dataStart = (reader.Position + alignment - 1) / alignment * alignment;
        long dataLength = Math.Max(0, file.Length - dataStart);
        var result = new List<GgufTensor>(infos.Count);
        foreach ((string name, GgmlType type, long[] shape, long offset, long length) in infos)
        {
            if (offset > dataLength || length > dataLength - offset)
                throw new InvalidDataException($"{file.Path}: tensor '{name}' ({length} bytes at data offset {offset}) runs past the end of the file ({dataLength} bytes of data); the file is truncated.");
            result.Add(new GgufTensor(name, type, shape, part, offset, length));
        }
        TensorRanges.CheckNoOverlap(file.Path, result.Select(t => (t.Name, t.Offset, t.ByteLength)));
        return (version, metadata, result, dataStart);
    }

    private static uint BinaryPrimitivesReverse(uint value) => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(value);

    /// <summary>Reads the header's little-endian fields, each checked against what is left of the file.</summary>
    private ref struct Reader
    {
        private readonly ReadOnlySpan<byte> _bytes;
        private readonly string _path;
        private int _position;

        public Reader(ReadOnlySpan<byte> bytes, string path)
        {
            _bytes = bytes;
            _path = path;
        }

        public readonly int Position => _position;

        public readonly long Remaining => _bytes.Length - _position;

        public uint UInt32(string what) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));

        public ulong UInt64(string what) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

        public string String(string what)
        {
            ulong length = UInt64($"the length of {what}");
            if (length > (ulong)Remaining)
                throw new InvalidDataException($"{_path}: {what} claims {length} bytes, more than the {Remaining} left in the file.");
            ReadOnlySpan<byte> bytes = Take((int)length, what);
            try
            {
                return Strict.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw new InvalidDataException($"{_path}: {what} is not valid UTF-8.");
            }
        }

        public GgufValue Value(GgufValueType type, string what, int depth) => type switch
        {
            GgufValueType.UInt8 => new(type, (ulong)Take(1, what)[0]),
            GgufValueType.Int8 => new(type, (long)(sbyte)Take(1, what)[0]),
            GgufValueType.UInt16 => new(type, (ulong)System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what))),
            GgufValueType.Int16 => new(type, (long)System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(Take(2, what))),
            GgufValueType.UInt32 => new(type, (ulong)UInt32(what)),
            GgufValueType.Int32 => new(type, (long)(int)UInt32(what)),
            GgufValueType.UInt64 => new(type, UInt64(what)),
            GgufValueType.Int64 => new(type, (long)UInt64(what)),
            // A float32 stands for the shortest decimal that rounds to it (1e-6, not 9.99999997e-7), as the converter meant it.
            GgufValueType.Float32 => new(type, double.Parse(BitConverter.Int32BitsToSingle((int)UInt32(what)).ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture)),
            GgufValueType.Float64 => new(type, BitConverter.Int64BitsToDouble((long)UInt64(what))),
            GgufValueType.Bool => Take(1, what)[0] switch
            {
                0 => new(type, false),
                1 => new(type, true),
                byte b => throw new InvalidDataException($"{_path}: {what} is a bool stored as {b}, not 0 or 1."),
            },
            GgufValueType.String => new(type, String(what)),
            GgufValueType.Array => Array(what, depth),
            _ => throw new InvalidDataException($"{_path}: {what} has value type {(uint)type}, which GGUF does not define."),
        };

        private GgufValue Array(string what, int depth)
        {
            if (depth >= MaxArrayNesting)
                throw new InvalidDataException($"{_path}: {what} nests arrays deeper than {MaxArrayNesting}.");
            var elementType = (GgufValueType)UInt32($"the element type of {what}");
            if (!Enum.IsDefined(elementType))
                throw new InvalidDataException($"{_path}: {what} is an array of value type {(uint)elementType}, which GGUF does not define.");
            ulong count = UInt64($"the length of {what}");
            int smallest = elementType switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.Array => 12,
                _ => 8,
            };
            if (count > (ulong)Remaining / (ulong)smallest)
                throw new InvalidDataException($"{_path}: {what} claims {count} elements, more than the {Remaining} bytes left can hold.");
            // Elements are held boxed, about 32 bytes each: a bound keeps a lying file from asking for gigabytes.
            if (count > MaxArrayElements)
                throw new InvalidDataException($"{_path}: {what} has {count} elements; metadata arrays of more than {MaxArrayElements} are not read.");
            var elements = new object[count];
            string element = $"an element of {what}";
            for (ulong i = 0; i < count; i++)
                elements[i] = Value(elementType, element, depth + 1).Value;
            return new GgufValue(GgufValueType.Array, elements, elementType);
        }

        private ReadOnlySpan<byte> Take(int count, string what)
        {
            if (count > Remaining)
                throw new InvalidDataException($"{_path}: the file ends inside {what} (offset {_position}: {count} bytes needed, {Remaining} left); it is truncated.");
            ReadOnlySpan<byte> bytes = _bytes.Slice(_position, count);
            _position += count;
            return bytes;
        }
    }

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
