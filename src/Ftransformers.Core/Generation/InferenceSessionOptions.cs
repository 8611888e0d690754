using Ftransformers.Model;

namespace Ftransformers.Generation;

/// <summary>How a session is loaded and run.</summary>
public sealed record InferenceSessionOptions
{
    /// <summary>A checkpoint folder, or <c>synthetic:NAME</c> for a built-in random-weight model.</summary>
    public string Model { get; init; } = "synthetic:tiny";

    /// <summary>Tokenizer folder; null uses the model folder's tokenizer.json, else the byte tokenizer.</summary>
    public string? Tokenizer { get; init; }

    /// <summary>Weight formats; null computes in F32 over the stored weights (a converted checkpoint loads as converted).</summary>
    public Precision? Precision { get; init; }

    /// <summary>Threads for the CPU kernels, the engine's own included (server flag <c>--cpuinfer</c>).</summary>
    public int CpuThreads { get; init; } = Environment.ProcessorCount;

    /// <summary>The model-loading part of these options.</summary>
    public ModelLoadOptions ToModelLoadOptions() => new() { Precision = Precision, CpuThreads = CpuThreads };

    /// <summary>Throws when a value is out of range, naming the option.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Model))
            throw new ArgumentException("Model must name a checkpoint folder or synthetic:NAME.", nameof(Model));
        ToModelLoadOptions().Validate();
    }
}
