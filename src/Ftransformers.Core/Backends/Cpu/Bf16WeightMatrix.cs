using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// BF16 weights read in place from the mapping (or a pinned array) and widened on the fly; products of many tokens run
/// in tiles of rows x tokens (<see cref="Bf16Rows"/>).
/// </summary>
internal sealed unsafe class Bf16WeightMatrix : WeightMatrix
{
    private readonly ushort* _data;
    private readonly PinnedArray<ushort>? _owned;

    public Bf16WeightMatrix(string name, int rows, int cols, ushort* mapped) : base(name, rows, cols) => _data = mapped;

    /// <summary>Rounds F32 values to BF16 into an owned array.</summary>
    public Bf16WeightMatrix(string name, int rows, int cols, ReadOnlySpan<float> values) : base(name, rows, cols)
    {
        _owned = PinnedArray<ushort>.Uninitialized(checked(rows * cols));
        BFloat16.FromSingle(values, _owned.Span);
        _data = _owned.Pointer;
    }

    internal override RowStorage[] Storage() => [new((nint)_data, (long)Cols * sizeof(ushort), 1, Rows)];

    internal override WeightMatrix Relocated(nint[] starts) => new Bf16WeightMatrix(Name, Rows, Cols, (ushort*)starts[0]);

    private ReadOnlySpan<ushort> Row(int row) => new(_data + (long)row * Cols, Cols);

    protected internal override int MaxTokensPerPass => Bf16Rows.TokensPerPass(Cols);

    protected internal override void PrepareActivations(MatrixProduct product) => product.PairInput();

    protected internal override void MultiplyRows(MatrixProduct p, int start, int end) => Bf16Rows.Multiply(
        new ReadOnlySpan<ushort>(_data + (long)start * Cols, (end - start) * Cols), Cols, new ReadOnlySpan<float>(p.Paired, p.Tokens * Cols),
        p.Tokens, new Span<float>(p.Y + start, (p.Tokens - 1) * Rows + end - start), Rows);

    public override float DotRow(int row, ReadOnlySpan<float> x) => BFloat16.Dot(Row(row), x);

    public override void CopyRow(int row, Span<float> destination) => BFloat16.ToSingle(Row(row), destination);
}
