using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Threading;
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
        Matrix = null!;
    }

    public ReadOnlySpan<float> Input => new(X, Tokens * Matrix.Cols);

    /// <summary>Units [start, end) of <see cref="WeightMatrix.RowAlignment"/> rows each.</summary>
    public void Run(int start, int end)
    {
        int alignment = Matrix.RowAlignment;
        Matrix.MultiplyRows(this, start * alignment, Math.Min(end * alignment, Matrix.Rows));
    }
}
