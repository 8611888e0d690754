using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Threading;
using Ftransformers.Memory;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// The state of one matrix product handed to the compute pool: inputs, outputs and reusable activation buffers.
/// One per calling thread, so that dispatch allocates nothing.
/// </summary>
internal sealed unsafe class MatrixProduct : IRangeWork
{
    [ThreadStatic]
    private static MatrixProduct? t_current;

    public WeightMatrix Matrix { get; private set; } = null!;
    public float* X { get; private set; }
    public float* Y { get; private set; }
    public int Tokens { get; private set; }

    /// <summary>Quantized activations for INT8 and INT4 weights.</summary>
    public Int8Activations Activations { get; set; } = new();

    /// <summary>
    /// Whether <see cref="X"/> is scratch of the product's owner that nothing else reads afterwards, so that a format
    /// may rearrange it in place (<see cref="PairInput"/>).
    /// </summary>
    public bool InputIsScratch { get; set; }

    /// <summary>The inputs in <see cref="Bf16Rows"/>' paired order, after <see cref="PairInput"/>.</summary>
    public float* Paired { get; private set; }

    // The paired copy of inputs that are not scratch.
    private PinnedArray<float> _paired = PinnedArray<float>.Zeroed(0);

    public static MatrixProduct ForThisThread() => t_current ??= new MatrixProduct();

    public void Start(WeightMatrix matrix, float* x, float* y, int tokens)
    {
        Matrix = matrix;
        X = x;
        Y = y;
        Tokens = tokens;
    }

    public void Finish()
    {
        X = null;
        Y = null;
        Paired = null;
        Matrix = null!;
    }

    /// <summary>Pairs the inputs for BF16 weights: in place when they are scratch, else into a buffer of the product's.</summary>
    public void PairInput()
    {
        int length = Tokens * Matrix.Cols;
        if (!InputIsScratch && _paired.Length < length)
            _paired = PinnedArray<float>.Uninitialized(length);
        float* target = InputIsScratch ? X : _paired.Pointer;
        Bf16Rows.Pair(Input, Matrix.Cols, new Span<float>(target, length));
        Paired = target;
    }

    /// <summary>Takes the prepared inputs of <paramref name="other"/>, a product of the same inputs (an expert's gate for its up).</summary>
    public void ShareInputOf(MatrixProduct other)
    {
        Activations = other.Activations;
        Paired = other.Paired;
    }

    public ReadOnlySpan<float> Input => new(X, Tokens * Matrix.Cols);

    /// <summary>Units [start, end) of <see cref="WeightMatrix.RowAlignment"/> rows each.</summary>
    public void Run(int start, int end)
    {
        int alignment = Matrix.RowAlignment;
        Matrix.MultiplyRows(this, start * alignment, Math.Min(end * alignment, Matrix.Rows));
    }
}
