using Ftransformers.Formats;

namespace Ftransformers.Model;

/// <summary>Reads model tensors from a checkpoint, checking each one's shape against the config.</summary>
internal sealed class WeightLoader(Checkpoint checkpoint, int fp8BlockSize)
{
    public bool Contains(string name) => checkpoint.Contains(name);

    /// <summary>A [rows, cols] matrix: BF16 and F32 stay mapped; F16 and FP8 are decoded to F32.</summary>
    public unsafe WeightMatrix Matrix(string name, int rows, int cols)
    {
        TensorInfo info = CheckShape(name, rows, cols);
        return info.DType switch
        {
            TensorDType.BF16 => new Bf16WeightMatrix(name, rows, cols, (ushort*)checkpoint.Pointer(name)),
            TensorDType.F32 => new F32WeightMatrix(name, rows, cols, (float*)checkpoint.Pointer(name)),
            _ => new F32WeightMatrix(name, rows, cols, checkpoint.ReadSingle(name, fp8BlockSize)),
        };
    }

    /// <summary>A 1-D tensor decoded to F32.</summary>
    public float[] Vector(string name, int length)
    {
        CheckShape(name, length);
        return checkpoint.ReadSingle(name, fp8BlockSize);
    }

    private TensorInfo CheckShape(string name, params long[] expected)
    {
        TensorInfo info = checkpoint.Info(name);
        if (!info.Shape.SequenceEqual(expected))
            throw new InvalidDataException($"{checkpoint.Location}: tensor '{name}' has shape {info.ShapeText}, but config.json implies [{string.Join(", ", expected)}].");
        if (info.DType is not (TensorDType.F32 or TensorDType.BF16 or TensorDType.F16 or TensorDType.F8_E4M3))
            throw new InvalidDataException($"{checkpoint.Location}: tensor '{name}' has dtype {info.DType}; model weights must be F32, F16, BF16 or F8_E4M3.");
        return info;
    }
}
