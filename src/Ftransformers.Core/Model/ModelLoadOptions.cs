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

    /// <summary>Every value out of range: the option's name and the rule it breaks; empty when they are valid.</summary>
    public IReadOnlyList<(string Option, string Rule)> Problems()
    {
        var problems = new List<(string, string)>();
        if (Precision is { } precision)
        {
            try
            {
                precision.Int4.Validate();
            }
            catch (ArgumentException e)
            {
                problems.Add((nameof(Precision), $"is invalid: {e.Message}"));
            }
        }
        if (CpuThreads is < 1 or > 4096)
            problems.Add((nameof(CpuThreads), $"must be between 1 and 4096 (got {CpuThreads})."));
        return problems;
    }

    /// <summary>Throws for the first value out of range, naming the option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        if (Problems() is [var (option, rule), ..])
            throw new ArgumentOutOfRangeException(option, $"{option} {rule}");
    }

    internal ComputePool? CreatePool() => CpuThreads > 1 ? new ComputePool(CpuThreads, PinThreads) : null;
}
