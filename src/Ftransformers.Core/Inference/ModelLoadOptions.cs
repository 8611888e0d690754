using Ftransformers.Kernels;
using Ftransformers.Threading;
using Ftransformers.Model;

namespace Ftransformers.Inference;

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

    /// <summary>
    /// NUMA nodes the compute threads and the routed experts' rows are split across (<c>--numa-nodes</c>); null uses the
    /// machine's nodes among the CPUs the process may use. More than the machine has splits its CPUs into that many
    /// groups acting as nodes; 1 turns NUMA placement off.
    /// </summary>
    public int? NumaNodes { get; init; }

    /// <summary>The attention backend's name (<see cref="BackendRegistry"/>): embeddings, attention, dense layers, router, shared experts, head.</summary>
    public string AttentionBackend { get; init; } = BackendRegistry.Cpu;

    /// <summary>The expert backend's name (<see cref="BackendRegistry"/>): the routed experts.</summary>
    public string ExpertBackend { get; init; } = BackendRegistry.Cpu;

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
        if (NumaNodes is < 1)
            problems.Add((nameof(NumaNodes), $"must be at least 1, or unset for the machine's nodes (got {NumaNodes})."));
        else if (NumaNodes > CpuThreads)
            problems.Add((nameof(NumaNodes), $"({NumaNodes}) cannot exceed CpuThreads ({CpuThreads}): every node needs a thread."));
        if (!BackendRegistry.AttentionBackends.Contains(AttentionBackend, StringComparer.OrdinalIgnoreCase))
            problems.Add((nameof(AttentionBackend), $"'{AttentionBackend}' is unknown; known: {string.Join(", ", BackendRegistry.AttentionBackends)}."));
        if (!BackendRegistry.ExpertBackends.Contains(ExpertBackend, StringComparer.OrdinalIgnoreCase))
            problems.Add((nameof(ExpertBackend), $"'{ExpertBackend}' is unknown; known: {string.Join(", ", BackendRegistry.ExpertBackends)}."));
        return problems;
    }

    /// <summary>Throws for the first value out of range, naming the option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        if (Problems() is [var (option, rule), ..])
            throw new ArgumentOutOfRangeException(option, $"{option} {rule}");
    }

    internal ComputePool? CreatePool() => CpuTopology.ForComputeThreads(CpuThreads, NumaNodes) is { } topology ? new ComputePool(topology, PinThreads) : null;
}
