namespace Ftransformers.Formats;

/// <summary>Checks on where tensors lie in a file's data section.</summary>
internal static class TensorRanges
{
    /// <summary>Throws when two tensors share bytes: a file that says so is corrupt or lying.</summary>
    /// <exception cref="InvalidDataException">Two tensors overlap; the message names them.</exception>
    public static void CheckNoOverlap(string path, IEnumerable<(string Name, long Offset, long Length)> tensors)
    {
        (string Name, long Offset, long Length)? previous = null;
        foreach (var tensor in tensors.Where(t => t.Length > 0).OrderBy(t => t.Offset))
        {
            if (previous is { } p && tensor.Offset < p.Offset + p.Length)
                throw new InvalidDataException($"{path}: tensors '{p.Name}' and '{tensor.Name}' overlap in the data section.");
            previous = tensor;
        }
    }
}
