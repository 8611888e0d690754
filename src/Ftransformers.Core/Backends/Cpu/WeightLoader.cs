using Ftransformers.Formats;
using Ftransformers.Kernels;
using Ftransformers.Quantization;
using Ftransformers.Threading;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// Reads model tensors from a checkpoint in the requested formats, checking each shape against the config.
/// Tensors of a converted checkpoint (<c>X.qweight</c>, <c>X.scales</c>, <c>X.mins</c>; GGUF blocks kept as
/// <c>X.q4_k</c>, <c>X.q5_k</c> or <c>X.q6_k</c>) are mapped as stored, whatever format the matrix's class asks.
/// </summary>
internal sealed class WeightLoader(Checkpoint checkpoint, int fp8BlockSize, Precision precision, ComputePool? pool)
{
    public Precision Precision => precision;

    public bool Contains(string name) => checkpoint.Contains(name) || IsConverted(name);

    // The part that holds a matrix's blocks in each K-quant format.
    private static readonly (KBlockFormat Format, string Part)[] KBlockParts = [(KBlockFormat.Q4K, CheckpointConverter.Q4KBlocks), (KBlockFormat.Q5K, CheckpointConverter.Q5KBlocks), (KBlockFormat.Q6K, CheckpointConverter.Q6KBlocks)];

    private bool IsConverted(string name) =>
        checkpoint.Contains(CheckpointConverter.PartName(name, "qweight")) || checkpoint.Contains(CheckpointConverter.PartName(name, CheckpointConverter.RowGroupCodes))
        || KBlockParts.Any(k => checkpoint.Contains(CheckpointConverter.PartName(name, k.Part)));

    /// <summary>A [rows, cols] matrix in <paramref name="format"/>, computing on the loader's pool.</summary>
    public WeightMatrix Matrix(string name, int rows, int cols, WeightFormat format = WeightFormat.Native)
    {
        WeightMatrix matrix = IsConverted(name) ? Converted(name, rows, cols) : Load(name, rows, cols, format);
        matrix.Pool = pool;
        return matrix;
    }

    private unsafe WeightMatrix Load(string name, int rows, int cols, WeightFormat format)
    {
        TensorInfo info = CheckShape(name, rows, cols);
        // A GGUF class's tensors that are not kept as blocks are computed as stored.
        if (format == WeightFormat.Gguf)
            format = WeightFormat.Native;
        return (format, info.DType) switch
        {
            (WeightFormat.Native or WeightFormat.Bf16, TensorDType.BF16) => new Bf16WeightMatrix(name, rows, cols, (ushort*)checkpoint.Pointer(name)),
            (WeightFormat.Native, TensorDType.F32) => new F32WeightMatrix(name, rows, cols, (float*)checkpoint.Pointer(name)),
            (WeightFormat.Native, _) => new F32WeightMatrix(name, rows, cols, Decode(name)),
            (WeightFormat.Bf16, _) => new Bf16WeightMatrix(name, rows, cols, Decode(name)),
            (WeightFormat.W8A8, _) => new Int8WeightMatrix(name, Int8Quantizer.Quantize(Decode(name), rows, cols)),
            (WeightFormat.Q4K, _) => KBlockWeightMatrix.QuantizeQ4K(name, Decode(name), rows, cols),
            _ => new Int4WeightMatrix(name, Int4Quantizer.Quantize(Decode(name), rows, cols, precision.Int4, precision.SearchInt4Scales)),
        };
    }

    /// <summary>The F32 values of a stored (not converted) tensor.</summary>
    public float[] Decode(string name) => checkpoint.ReadSingle(name, fp8BlockSize);

    private unsafe WeightMatrix Converted(string name, int rows, int cols)
    {
        if (checkpoint.Contains(CheckpointConverter.PartName(name, CheckpointConverter.RowGroupCodes)))
            return ConvertedRowGroups(name, rows, cols);
        foreach ((KBlockFormat kFormat, string part) in KBlockParts)
        {
            string blocks = CheckpointConverter.PartName(name, part);
            if (!checkpoint.Contains(blocks))
                continue;
            // GGUF's K-quant blocks as stored, mapped in place.
            if (cols % KBlockLayout.BlockValues != 0)
                throw new InvalidDataException($"{checkpoint.Location}: tensor '{blocks}' holds {KBlockLayout.NameOf(kFormat)} blocks of {KBlockLayout.BlockValues} values, but config.json implies {cols} columns.");
            Expect(blocks, checkpoint.Info(blocks), TensorDType.U8, rows, KBlockLayout.BytesOf(kFormat, 1, cols));
            return new KBlockWeightMatrix(name, new KBlockLayout(kFormat, checkpoint.Pointer(blocks), rows, cols, checkpoint));
        }
        string qweight = CheckpointConverter.PartName(name, "qweight"), scales = CheckpointConverter.PartName(name, "scales"), mins = CheckpointConverter.PartName(name, "mins");
        TensorInfo codes = checkpoint.Info(qweight);
        if (codes.DType == TensorDType.I8)
        {
            // A scale per row (ours), or per block of 32 values (a GGUF's Q8_0 kept as stored).
            Expect(qweight, codes, TensorDType.I8, rows, cols);
            TensorInfo int8Scales = checkpoint.Info(scales);
            bool blocks = int8Scales.Shape.Length == 2;
            if (blocks && cols % Int8Layout.Q8BlockSize != 0)
                throw new InvalidDataException($"{checkpoint.Location}: tensor '{scales}' holds a scale per block of {Int8Layout.Q8BlockSize}, but config.json implies {cols} columns.");
            if (blocks)
                Expect(scales, int8Scales, TensorDType.F32, rows, cols / Int8Layout.Q8BlockSize);
            else
                Expect(scales, int8Scales, TensorDType.F32, rows);
            return new Int8WeightMatrix(name, new Int8Weights(rows, cols, (sbyte*)checkpoint.Pointer(qweight), (float*)checkpoint.Pointer(scales), checkpoint,
                blocks ? Int8Layout.Q8BlockSize : 0));
        }
        Expect(qweight, codes, TensorDType.U8, rows, cols / 2);
        TensorInfo scaleInfo = checkpoint.Info(scales);
        if (scaleInfo.Shape.Length != 2 || scaleInfo.Shape[0] != rows || scaleInfo.Shape[1] == 0 || cols % scaleInfo.Shape[1] != 0)
            throw new InvalidDataException($"{checkpoint.Location}: tensor '{scales}' has shape {scaleInfo.ShapeText}, expected [{rows}, groups] for {cols} columns.");
        int groups = (int)scaleInfo.Shape[1];
        bool symmetric = !checkpoint.Contains(mins);
        var format = new Int4Format(cols / groups, symmetric);
        Expect(scales, scaleInfo, TensorDType.F16, rows, groups);
        if (!symmetric)
            Expect(mins, checkpoint.Info(mins), TensorDType.F16, rows, groups);
        return new Int4WeightMatrix(name, new Int4Weights(rows, cols, format, checkpoint.Pointer(qweight),
            (Half*)checkpoint.Pointer(scales), symmetric ? null : (Half*)checkpoint.Pointer(mins), checkpoint));
    }

    // INT4 in row groups: mapped in place where the row-group kernels run, else repacked into rows.
    private unsafe WeightMatrix ConvertedRowGroups(string name, int rows, int cols)
    {
        string codes = CheckpointConverter.PartName(name, CheckpointConverter.RowGroupCodes), scales = CheckpointConverter.PartName(name, CheckpointConverter.RowGroupScales),
            mins = CheckpointConverter.PartName(name, CheckpointConverter.RowGroupMins);
        if (cols % Int4Weights.BlockSize != 0)
            throw new InvalidDataException($"{checkpoint.Location}: tensor '{codes}' holds row groups of {Int4Weights.BlockSize}-weight blocks, but config.json implies {cols} columns.");
        (long[] codeShape, long[] scaleShape) = Int4RowGroups.FileShapes(rows, cols);
        bool symmetric = !checkpoint.Contains(mins);
        Expect(codes, checkpoint.Info(codes), TensorDType.U8, codeShape);
        Expect(scales, checkpoint.Info(scales), TensorDType.F16, scaleShape);
        if (!symmetric)
            Expect(mins, checkpoint.Info(mins), TensorDType.F16, scaleShape);
        var rowGroups = Int4RowGroups.Over(rows, cols, symmetric, checkpoint.Pointer(codes), (Half*)checkpoint.Pointer(scales),
            symmetric ? null : (Half*)checkpoint.Pointer(mins), checkpoint);
        return Int4RowGroupKernel.IsSupported ? new Int4WeightMatrix(name, rowGroups) : new Int4WeightMatrix(name, rowGroups.ToWeights());
    }

    /// <summary>A 1-D tensor decoded to F32.</summary>
    public float[] Vector(string name, int length)
    {
        CheckShape(name, length);
        return Decode(name);
    }


    private void Expect(string name, TensorInfo info, TensorDType dtype, params long[] shape)
    {
        if (info.DType != dtype || !info.Shape.SequenceEqual(shape))
            throw new InvalidDataException($"{checkpoint.Location}: tensor '{name}' is {info.DType} {info.ShapeText}, expected {dtype} [{string.Join(", ", shape)}].");
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
