using System.IO.MemoryMappedFiles;
using Ftransformers.Memory;

namespace Ftransformers.Formats;

/// <summary>
/// A file's bytes in memory, read in place: mapped read-only from disk, or a pinned image made in memory (synthetic
/// checkpoints, tests). The pointer stays valid until disposal.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly PinnedArray<byte>? _image;
    private byte* _pointer;

    private MappedFile(string path, byte* pointer, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, PinnedArray<byte>? image)
    {
        Path = path;
        _pointer = pointer;
        Length = length;
        _map = map;
        _view = view;
        _image = image;
    }

    /// <summary>Where the bytes came from, for messages.</summary>
    public string Path { get; }

    /// <summary>Bytes in the file.</summary>
    public long Length { get; }

    /// <summary>The first byte.</summary>
    public byte* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return _pointer;
        }
    }

    /// <summary>Maps <paramref name="path"/> read-only; <paramref name="kind"/> names the format in the error of a missing file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static MappedFile Open(string path, string kind)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{kind} file '{path}' does not exist.", path);
        long length = new FileInfo(path).Length;
        if (length == 0)
            return FromImage(path, PinnedArray<byte>.CopyOf([]));
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, pointer + view.PointerOffset, length, map, view, null);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>Takes ownership of a pinned image.</summary>
    public static MappedFile FromImage(string name, PinnedArray<byte> image) => new(name, image.Pointer, image.Length, null, null, image);

    /// <summary>The bytes at <paramref name="offset"/>, at most <paramref name="maxLength"/> of them (spans hold under 2 GiB).</summary>
    public ReadOnlySpan<byte> Bytes(long offset, long maxLength) => offset >= Length ? default
        : new(Pointer + offset, (int)Math.Min(Math.Min(maxLength, Length - offset), int.MaxValue));

    public void Dispose()
    {
        if (_view != null && _pointer != null)
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _pointer = null;
        _view?.Dispose();
        _map?.Dispose();
        GC.KeepAlive(_image);
    }
}
