using System.Runtime.InteropServices;
using System.Text.Json;
using Ftransformers.Kernels;

namespace Ftransformers.Formats;

/// <summary>
/// The tensors of a checkpoint: one safetensors file or several shards joined by
/// <c>model.safetensors.index.json</c>, all memory-mapped. Looks tensors up by name across shards.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    /// <summary>The name of the shard index in the Hugging Face layout.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _byTensor;

    /// <summary>Where the checkpoint came from, used in messages.</summary>
    public string Location { get; }

    /// <summary>Names of all tensors.</summary>
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    private Checkpoint(string location, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> byTensor)
    {
        Location = location;
        _files = files;
        _byTensor = byTensor;
    }

    /// <summary>
    /// Opens the safetensors of a checkpoint folder: the shards listed by <c>model.safetensors.index.json</c>
    /// when present, else <c>model.safetensors</c>, else every <c>model*.safetensors</c>.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidDataException">A shard or the index is malformed or inconsistent.</exception>
    public static Checkpoint Open(string directory)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"Checkpoint folder '{directory}' does not exist.");
        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index))
            return OpenIndexed(directory, index);
        string single = Path.Combine(directory, "model.safetensors");
        string[] shards = File.Exists(single) ? [single] : Directory.GetFiles(directory, "model*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (shards.Length == 0)
            throw new FileNotFoundException($"Checkpoint folder '{directory}' has neither {IndexFileName} nor model*.safetensors files.");
        return FromFiles(directory, OpenAll(shards));
    }

    /// <summary>Joins already opened files into one checkpoint (takes ownership of them).</summary>
    /// <exception cref="InvalidDataException">Two files hold a tensor of the same name.</exception>
    public static Checkpoint FromFiles(string location, IReadOnlyList<SafetensorsFile> files)
    {
        var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        foreach (SafetensorsFile file in files)
            foreach (string name in file.Tensors.Keys)
                if (!byTensor.TryAdd(name, file))
                {
                    foreach (SafetensorsFile f in files)
                        f.Dispose();
                    throw new InvalidDataException($"{location}: tensor '{name}' appears in both '{byTensor[name].Path}' and '{file.Path}'.");
                }
        return new Checkpoint(location, [.. files], byTensor);
    }

    private static Checkpoint OpenIndexed(string directory, string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{indexPath}: missing object 'weight_map'.");
            weightMap = map.EnumerateObject().ToDictionary(p => p.Name,
                p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw new InvalidDataException($"{indexPath}: weight_map entry '{p.Name}' must be a file name."));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{indexPath}: not valid JSON: {e.Message}", e);
        }

        string[] shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        foreach (string shard in shardNames)
            if (shard.Contains('/') || shard.Contains('\\') || !File.Exists(Path.Combine(directory, shard)))
                throw new FileNotFoundException($"{indexPath}: shard '{shard}' does not exist in '{directory}'.");
        List<SafetensorsFile> files = OpenAll(shardNames.Select(s => Path.Combine(directory, s)));
        Checkpoint checkpoint = FromFiles(directory, files);
        foreach (var (tensor, shard) in weightMap)
        {
            if (!checkpoint._byTensor.TryGetValue(tensor, out SafetensorsFile? file) || Path.GetFileName(file.Path) != shard)
            {
                checkpoint.Dispose();
                throw new InvalidDataException($"{indexPath}: tensor '{tensor}' is listed in shard '{shard}' but that shard does not hold it.");
            }
        }
        return checkpoint;
    }

    private static List<SafetensorsFile> OpenAll(IEnumerable<string> paths)
    {
        var files = new List<SafetensorsFile>();
        try
        {
            foreach (string path in paths)
                files.Add(SafetensorsFile.Open(path));
            return files;
        }
        catch
        {
            foreach (SafetensorsFile f in files)
                f.Dispose();
            throw;
        }
    }

    /// <summary>Whether a tensor of this name exists.</summary>
    public bool Contains(string name) => _byTensor.ContainsKey(name);

    /// <summary>A tensor's header entry.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor; the message names it and the checkpoint.</exception>
    public TensorInfo Info(string name) => FileOf(name).Tensors[name];

    /// <summary>Address of a tensor's bytes in the mapping; valid while the checkpoint is open.</summary>
    internal unsafe byte* Pointer(string name) => FileOf(name).GetPointer(Info(name));

    /// <summary>The file (or in-memory image) a tensor's bytes are read from, for messages and checks.</summary>
    internal string SourceOf(string name) => FileOf(name).Path;

    /// <summary>A tensor's raw bytes, read in place.</summary>
    public ReadOnlySpan<byte> Bytes(string name) => FileOf(name).GetBytes(Info(name));

    /// <summary>
    /// Reads a floating-point tensor as F32, whatever its stored dtype. An F8_E4M3 tensor is multiplied by its
    /// <c>*_scale_inv</c> companion, one F32 scale per <paramref name="fp8BlockSize"/>-square block (2-D tensors only).
    /// </summary>
    /// <exception cref="InvalidDataException">The dtype is not a float type, or an FP8 scale is missing or misshapen.</exception>
    public float[] ReadSingle(string name, int fp8BlockSize = 128)
    {
        TensorInfo info = Info(name);
        ReadOnlySpan<byte> bytes = Bytes(name);
        var result = new float[checked((int)info.ElementCount)];
        switch (info.DType)
        {
            case TensorDType.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(result);
                break;
            case TensorDType.BF16:
                BFloat16.ToSingle(MemoryMarshal.Cast<byte, ushort>(bytes), result);
                break;
            case TensorDType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), result);
                break;
            case TensorDType.F8_E4M3:
                DecodeFp8(name, info, bytes, fp8BlockSize, result);
                break;
            default:
                throw new InvalidDataException($"{Location}: tensor '{name}' has dtype {info.DType}, expected a floating-point type.");
        }
        return result;
    }

    private void DecodeFp8(string name, TensorInfo info, ReadOnlySpan<byte> bytes, int block, float[] result)
    {
        string scaleName = name.EndsWith(".weight", StringComparison.Ordinal) ? name + "_scale_inv" : name + ".scale_inv";
        if (info.Shape.Length != 2)
            throw new InvalidDataException($"{Location}: FP8 tensor '{name}' has shape {info.ShapeText}; only 2-D block-scaled weights are supported.");
        if (!Contains(scaleName))
            throw new InvalidDataException($"{Location}: FP8 tensor '{name}' has no scale tensor '{scaleName}'.");
        int rows = (int)info.Shape[0], cols = (int)info.Shape[1];
        int scaleRows = (rows + block - 1) / block, scaleCols = (cols + block - 1) / block;
        TensorInfo scaleInfo = Info(scaleName);
        if (scaleInfo.Shape.Length != 2 || scaleInfo.Shape[0] != scaleRows || scaleInfo.Shape[1] != scaleCols)
            throw new InvalidDataException($"{Location}: scale '{scaleName}' has shape {scaleInfo.ShapeText}, expected [{scaleRows}, {scaleCols}] for {info.ShapeText} in {block}x{block} blocks.");
        float[] scales = ReadSingle(scaleName);
        for (int r = 0; r < rows; r++)
            for (int c0 = 0; c0 < cols; c0 += block)
            {
                int n = Math.Min(block, cols - c0);
                Float8E4M3.ToSingle(bytes.Slice(r * cols + c0, n), scales[(r / block) * scaleCols + c0 / block], result.AsSpan(r * cols + c0, n));
            }
    }

    private SafetensorsFile FileOf(string name) =>
        _byTensor.TryGetValue(name, out SafetensorsFile? file) ? file : throw new KeyNotFoundException($"Checkpoint '{Location}' has no tensor '{name}'.");

    /// <summary>Unmaps every shard.</summary>
    public void Dispose()
    {
        foreach (SafetensorsFile file in _files)
            file.Dispose();
    }
}
