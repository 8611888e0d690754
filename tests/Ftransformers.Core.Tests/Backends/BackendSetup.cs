using Ftransformers.Backends;
using Ftransformers.Model;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Backends;

/// <summary>
/// One pair of backends and a NUMA split under test. The backend conformance suite (every fixture that takes a
/// setup: exactness against the reference, chunked and batched prefill, routed experts against float64, overlap of
/// the shared experts) runs once per setup; a new backend joins by adding its names to <see cref="All"/>.
/// </summary>
public sealed record BackendSetup(string Attention, string Experts, int NumaNodes)
{
    // Three threads, so that three nodes each get one (two cores run them in turn).
    private const int Threads = 3;

    /// <summary>The CPU backends on one node, on two, and on three (rows not divisible by three).</summary>
    public static IEnumerable<BackendSetup> All() =>
    [
        new(BackendRegistry.Cpu, BackendRegistry.Cpu, 1),
        new(BackendRegistry.Cpu, BackendRegistry.Cpu, 2),
        new(BackendRegistry.Cpu, BackendRegistry.Cpu, 3),
    ];

    /// <summary><paramref name="options"/> with these backends and nodes.</summary>
    public ModelLoadOptions Apply(ModelLoadOptions? options = null) =>
        (options ?? new ModelLoadOptions()) with { AttentionBackend = Attention, ExpertBackend = Experts, NumaNodes = NumaNodes, CpuThreads = Threads };

    public DeepSeekV3Model Load(string directory, Precision? precision = null) => DeepSeekV3Model.Load(directory, Apply(new ModelLoadOptions { Precision = precision }));

    public DeepSeekV3Model Synthetic(DeepSeekV3Config config, Precision? precision = null) =>
        DeepSeekV3Model.FromCheckpoint(config, SyntheticCheckpoint.CreateInMemory(config, seed: 1), Apply(new ModelLoadOptions { Precision = precision }));

    public override string ToString() => $"{Attention}+{Experts}, {NumaNodes} node{(NumaNodes == 1 ? "" : "s")}";
}
