using System.Numerics.Tensors;

namespace Ftransformers.Kernels;

/// <summary>Elementwise activations of the MLPs.</summary>
public static class Activations
{
    /// <summary>destination = silu(gate) * up, where silu(g) = g * sigmoid(g). <paramref name="destination"/> may alias <paramref name="gate"/>.</summary>
    public static void SiluMultiply(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> destination)
    {
        if (up.Length != gate.Length || destination.Length < gate.Length)
            throw new ArgumentException($"SiLU-multiply needs equal lengths (gate {gate.Length}, up {up.Length}, destination {destination.Length}).");
        Span<float> d = destination[..gate.Length];
        // sigmoid into the destination first, so that gate may alias it.
        float[]? rented = null;
        Span<float> sig = gate.Length <= 1024 ? stackalloc float[gate.Length] : (rented = System.Buffers.ArrayPool<float>.Shared.Rent(gate.Length)).AsSpan(0, gate.Length);
        TensorPrimitives.Sigmoid(gate, sig);
        TensorPrimitives.Multiply(gate, sig, d);
        TensorPrimitives.Multiply(d, up, d);
        if (rented != null)
            System.Buffers.ArrayPool<float>.Shared.Return(rented);
    }
}
