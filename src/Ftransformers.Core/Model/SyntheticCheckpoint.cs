using System.Runtime.InteropServices;
using Ftransformers.Formats;
using Ftransformers.Kernels;

namespace Ftransformers.Model;

/// <summary>
/// Random-weight checkpoints of the DeepSeek-V3 architecture, made deterministically from a seed: for quick
/// starts, benchmarks and tests that need shapes no fixture has. Each tensor's values depend only on the seed
/// and the tensor's name, so the same config and seed always give the same model.
/// </summary>
public static class SyntheticCheckpoint
{
    /// <summary>The tensors with their values, stored as <paramref name="dtype"/> (F32 or BF16).</summary>
    public static List<(string Name, TensorDType DType, long[] Shape, byte[] Data)> Tensors(DeepSeekV3Config config, int seed, TensorDType dtype = TensorDType.BF16)
    {
        if (dtype is not (TensorDType.F32 or TensorDType.BF16))
            throw new ArgumentException($"Synthetic weights are stored as F32 or BF16, not {dtype}.", nameof(dtype));
        var result = new List<(string, TensorDType, long[], byte[])>();
        foreach (var (name, shape) in config.TensorShapes())
        {
            float[] values = Values(name, shape, seed);
            byte[] data = dtype == TensorDType.F32 ? MemoryMarshal.AsBytes(values.AsSpan()).ToArray() : ToBf16Bytes(values);
            result.Add((name, dtype, shape, data));
        }
        return result;
    }

    /// <summary>Builds the checkpoint in memory (no files).</summary>
    public static Checkpoint CreateInMemory(DeepSeekV3Config config, int seed, TensorDType dtype = TensorDType.BF16)
    {
        var writer = new SafetensorsWriter();
        foreach (var (name, dt, shape, data) in Tensors(config, seed, dtype))
            writer.Add(name, dt, shape, data);
        return Checkpoint.FromFiles($"synthetic(seed {seed})", [SafetensorsFile.FromImage($"synthetic(seed {seed})", writer.ToImage())]);
    }

    /// <summary>Writes a checkpoint folder (config.json and safetensors in <paramref name="shards"/> files).</summary>
    public static void WriteDirectory(string directory, DeepSeekV3Config config, int seed, TensorDType dtype = TensorDType.BF16, int shards = 1)
    {
        SafetensorsWriter.WriteCheckpoint(directory, Tensors(config, seed, dtype), shards);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJson());
    }


    // Matrices: uniform with variance 1/fan_in, so activations keep their scale through the layers.
    // Norm weights near 1; the router's correction bias small but large enough to change selections.
    private static float[] Values(string name, long[] shape, int seed)
    {
        var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
        var rng = new SplitMix64(((ulong)(uint)seed << 32) ^ Fnv1a(name));
        if (shape.Length == 2)
        {
            float bound = MathF.Sqrt(3f / shape[1]);
            for (int i = 0; i < values.Length; i++)
                values[i] = rng.NextSymmetric() * bound;
        }
        else if (name.EndsWith("e_score_correction_bias", StringComparison.Ordinal))
        {
            for (int i = 0; i < values.Length; i++)
                values[i] = rng.NextSymmetric() * 0.1f;
        }
        else
        {
            for (int i = 0; i < values.Length; i++)
                values[i] = 1f + rng.NextSymmetric() * 0.2f;
        }
        return values;
    }

    private static byte[] ToBf16Bytes(float[] values)
    {
        var bits = new ushort[values.Length];
        BFloat16.FromSingle(values, bits);
        return MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
    }

    internal static ulong Fnv1a(string text)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in text)
            hash = (hash ^ c) * 1099511628211UL;
        return hash;
    }

    internal struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        public float NextSymmetric() => (Next() >> 40) * (2f / (1 << 24)) - 1f;

        public ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
