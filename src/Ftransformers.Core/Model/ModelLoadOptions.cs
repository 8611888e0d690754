using Ftransformers.Kernels;

namespace Ftransformers.Model;

/// <summary>How a model is loaded: precision and compute threads.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>
    /// The weight formats; null computes in F32 over the stored weights. A checkpoint written by <c>convert</c>
    /// loads as it was converted, and asking it for another precision is an error.
    /// </summary>
    public Precision? Precision { get; init; }

    /// <summary>Threads for the kernels (the caller's thread included); 1 computes on the caller only.</summary>
    public int CpuThreads { get; init; } = Environment.ProcessorCount;

    /// <summary>Pin compute threads to cores (Linux).</summary>
    public bool PinThreads { get; init; } = true;

    /// <summary>Times decode steps by part when set (see <see cref="ForwardProfile"/>); null times nothing.</summary>
    public ForwardProfile? Profile { get; init; }

    /// <summary>Throws when a value is out of range, naming the option.</summary>
    public void Validate()
    {
        Precision?.Int4.Validate();
        if (CpuThreads < 1 || CpuThreads > 4096)
            throw new ArgumentOutOfRangeException(nameof(CpuThreads), CpuThreads, "CpuThreads must be between 1 and 4096.");
    }

    internal ComputePool? CreatePool() => CpuThreads > 1 ? new ComputePool(CpuThreads, PinThreads) : null;
}
