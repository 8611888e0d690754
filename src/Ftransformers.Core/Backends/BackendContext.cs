using Ftransformers.Formats;
using Ftransformers.Model;
using Ftransformers.Threading;

namespace Ftransformers.Backends;

/// <summary>What a backend is built from: the architecture, the checkpoint whose tensors it loads by name, the weight formats, and the CPU threads.</summary>
/// <param name="Config">The model's architecture.</param>
/// <param name="Checkpoint">The tensors, by their Hugging Face names (the model owns it).</param>
/// <param name="Precision">The weight formats per tensor class.</param>
/// <param name="Pool">The CPU compute threads, grouped by NUMA node; null computes on the calling thread.</param>
public sealed record BackendContext(DeepSeekV3Config Config, Checkpoint Checkpoint, Precision Precision, ComputePool? Pool);
