using System.Numerics.Tensors;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Threading;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// All routed work of one MoE layer in one step, as a single job over the compute pool: every chosen expert's gate and
/// up products for the tokens routed to it, then its down product, each split into row chunks of about equal work and
/// queued on the node that holds those rows. The only wait inside the job is a down chunk waiting for its own expert's
/// gate and up; the last of those to finish applies SiLU · up and quantizes the down input. Results are those of
/// computing each expert alone, summed per token in ascending expert order as the reference does.
/// </summary>
internal sealed unsafe class RoutedExpertsJob : INodeWork
{
    // A node's work is cut into about this many chunks per thread, each of [MinChunkWork, MaxChunkWork] multiply-adds:
    // enough chunks to balance the threads, large enough that taking one from the queue costs nothing.
    private const int ChunksPerThread = 8;
    private const long MinChunkWork = 1 << 16, MaxChunkWork = 1 << 22;

    private enum Part : byte { Gate, Up, Down }

    private readonly record struct Item(int Unit, Part Part, int Start, int End);

    // An expert's pass over up to MaxTokensPerPass of its tokens: its inputs, products and state in the job.
    private sealed class Unit
    {
        // Down's input (h) is the job's own: a format may rearrange it in place. Gate and up share the gathered rows and
        // may rearrange them only when they read them alike (set per unit).
        public MatrixProduct Gate = new(), Up = new(), Down = new() { InputIsScratch = true };
        // Up's own quantized input, for experts whose up does not read the input as their gate does.
        public readonly Int8Activations UpActivations = new();
        public int Expert, First, Count;
        public int Remaining, Ready;
    }

    private readonly int _hidden, _inter, _topK;
    private readonly List<Unit> _units = [];
    private List<Item>[] _items = [];
    private int[] _slots = [], _counts = [], _tokens = [];
    private readonly Int8Activations _quantized = new();
    private int _blockSize;
    private PinnedArray<float> _input = PinnedArray<float>.Zeroed(0), _gate = PinnedArray<float>.Zeroed(0), _up = PinnedArray<float>.Zeroed(0), _out = PinnedArray<float>.Zeroed(0);
    private RoutedExperts _layer = null!;
    private ExpertBatch _batch = null!;
    private int _unitCount;
    private volatile bool _failed;

    public RoutedExpertsJob(int hidden, int intermediate, int topK) => (_hidden, _inter, _topK) = (hidden, intermediate, topK);

    /// <summary>Values per hidden state.</summary>
    public int Hidden => _hidden;

    /// <summary>Experts per token.</summary>
    public int TopK => _topK;

    /// <summary>
    /// Prepares the job for <paramref name="batch"/>: groups the choices by expert, quantizes the inputs once and gathers
    /// each expert's, queues the chunks per node (<paramref name="threadsPerNode"/> sizes them).
    /// </summary>
    public void Prepare(RoutedExperts layer, ExpertBatch batch, ReadOnlySpan<int> threadsPerNode)
    {
        int nodes = threadsPerNode.Length;
        (_layer, _batch, _failed) = (layer, batch, false);
        int choices = batch.Tokens * _topK, hidden = _hidden;
        // Slots (token * k + choice) grouped by expert: a counting sort keeps each expert's slots in token order.
        Grow(ref _counts, layer.Experts.Length + 1);
        Array.Clear(_counts);
        ReadOnlySpan<int> chosen = batch.Experts;
        foreach (int e in chosen)
        {
            if ((uint)e >= (uint)layer.Experts.Length)
                throw new ArgumentOutOfRangeException(nameof(batch), $"Expert id {e} is outside the layer's {layer.Experts.Length} routed experts.");
            _counts[e + 1]++;
        }
        for (int e = 0; e < layer.Experts.Length; e++)
            _counts[e + 1] += _counts[e];
        Grow(ref _slots, choices);
        int[] cursor = System.Buffers.ArrayPool<int>.Shared.Rent(layer.Experts.Length);
        try
        {
            _counts.AsSpan(0, layer.Experts.Length).CopyTo(cursor);
            for (int s = 0; s < choices; s++)
                _slots[cursor[chosen[s]]++] = s;
        }
        finally
        {
            System.Buffers.ArrayPool<int>.Shared.Return(cursor);
        }

        Grow(ref _tokens, choices);
        for (int i = 0; i < choices; i++)
            _tokens[i] = _slots[i] / _topK;
        // Integer formats: every token's input quantized once, as the experts' gate and up take it; each expert then
        // gathers its tokens' rows. Experts in another format gather the float rows instead.
        _blockSize = choices > 0 ? layer.Experts[chosen[0]].Gate.ActivationBlockSize : 0;
        bool floatRows = _blockSize == 0;
        foreach (int e in chosen)
            floatRows |= layer.Experts[e].Gate.ActivationBlockSize != _blockSize || !ReadAlike(layer.Experts[e]);
        if (_blockSize > 0)
            _quantized.Quantize(batch.Input, batch.Tokens, hidden, _blockSize);
        EnsureCapacity(ref _input, floatRows ? choices * hidden : 0);
        EnsureCapacity(ref _gate, choices * _inter);
        EnsureCapacity(ref _up, choices * _inter);
        EnsureCapacity(ref _out, choices * hidden);

        if (_items.Length != nodes)
            _items = [.. Enumerable.Range(0, nodes).Select(_ => new List<Item>())];
        foreach (List<Item> list in _items)
            list.Clear();
        _unitCount = 0;
        for (int e = 0; e < layer.Experts.Length; e++)
        {
            int first = _counts[e], count = _counts[e + 1] - first;
            Mlp expert = layer.Experts[e];
            for (int t0 = 0; t0 < count; t0 += expert.Gate.MaxTokensPerPass)
                AddUnit(e, first + t0, Math.Min(expert.Gate.MaxTokensPerPass, count - t0));
        }

        // A node's work: its rows of gate, up and down for every choice.
        Span<long> chunkWork = stackalloc long[nodes];
        for (int node = 0; node < nodes; node++)
        {
            long work = ((long)(layer.GateRows[node + 1] - layer.GateRows[node]) * 2 * _hidden + (long)(layer.DownRows[node + 1] - layer.DownRows[node]) * _inter) * choices;
            chunkWork[node] = Math.Clamp(work / (Math.Max(1, threadsPerNode[node]) * ChunksPerThread), MinChunkWork, MaxChunkWork);
        }
        for (int u = 0; u < _unitCount; u++)
        {
            Unit unit = _units[u];
            Mlp mlp = layer.Experts[unit.Expert];
            int remaining = 0;
            for (int node = 0; node < nodes; node++)
            {
                remaining += AddChunks(node, u, Part.Gate, mlp.Gate, layer.GateRows, unit.Count, chunkWork[node]);
                remaining += AddChunks(node, u, Part.Up, mlp.Up, layer.GateRows, unit.Count, chunkWork[node]);
            }
            unit.Remaining = remaining;
        }
        // Down chunks after every gate and up chunk, so a thread reaches one only when the gate and up it needs are under way.
        for (int u = 0; u < _unitCount; u++)
            for (int node = 0; node < nodes; node++)
                AddChunks(node, u, Part.Down, layer.Experts[_units[u].Expert].Down, layer.DownRows, _units[u].Count, chunkWork[node]);
    }

    private void AddUnit(int expert, int first, int count)
    {
        if (_unitCount == _units.Count)
            _units.Add(new Unit());
        Unit unit = _units[_unitCount];
        int u = _unitCount++;
        Mlp mlp = _layer.Experts[expert];
        (unit.Expert, unit.First, unit.Count, unit.Ready) = (expert, first, count, 0);
        float* input = _input.Pointer + (long)first * _hidden, gate = _gate.Pointer + (long)first * _inter, up = _up.Pointer + (long)first * _inter;
        unit.Gate.Start(mlp.Gate, input, gate, count);
        ReadOnlySpan<int> tokens = _tokens.AsSpan(first, count);
        // Gate and up read the same input: prepared once and shared when they read it alike (the same format); else
        // each prepares its own from the float rows, and neither may rearrange them in place.
        bool alike = ReadAlike(mlp), gathered = _blockSize > 0 && mlp.Gate.ActivationBlockSize == _blockSize;
        if (!gathered || !alike)
            for (int i = 0; i < count; i++)
                _batch.Input.Slice(tokens[i] * _hidden, _hidden).CopyTo(new Span<float>(input + (long)i * _hidden, _hidden));
        unit.Gate.InputIsScratch = unit.Up.InputIsScratch = alike;
        if (gathered)
            unit.Gate.Activations.GatherRows(_quantized, tokens);
        else
            mlp.Gate.PrepareActivations(unit.Gate);
        unit.Up.Start(mlp.Up, input, up, count);
        if (alike)
            unit.Up.ShareInputOf(unit.Gate);
        else
        {
            unit.Up.Activations = unit.UpActivations; // not the gate's, which an earlier use of the unit may have shared
            mlp.Up.PrepareActivations(unit.Up);
        }
        unit.Down.Start(mlp.Down, gate, _out.Pointer + (long)first * _hidden, count);
    }

    // Whether an expert's gate and up take their input prepared the same way (checkpoints may store them in different
    // dtypes, which load as different formats).
    private static bool ReadAlike(Mlp expert) => expert.Gate.GetType() == expert.Up.GetType() && expert.Gate.ActivationBlockSize == expert.Up.ActivationBlockSize;

    // Queues node's rows of a matrix in chunks of about chunkWork multiply-adds, whole row units each.
    private int AddChunks(int node, int unit, Part part, WeightMatrix matrix, int[] rowsOfNode, int tokens, long chunkWork)
    {
        int start = rowsOfNode[node], end = rowsOfNode[node + 1], alignment = matrix.RowAlignment;
        int rows = (int)Math.Clamp(chunkWork / Math.Max(1, (long)matrix.Cols * tokens), 1, Math.Max(1, end - start));
        rows = (rows + alignment - 1) / alignment * alignment;
        int added = 0;
        for (int r = start; r < end; r += rows, added++)
            _items[node].Add(new Item(unit, part, r, Math.Min(r + rows, end)));
        return added;
    }

    /// <summary>Chunks queued on each node.</summary>
    public void CountItems(Span<int> counts)
    {
        for (int node = 0; node < _items.Length; node++)
            counts[node] = _items[node].Count;
    }

    public void Run(int node, int start, int end)
    {
        List<Item> items = _items[node];
        try
        {
            for (int i = start; i < end; i++)
            {
                Item item = items[i];
                Unit unit = _units[item.Unit];
                Mlp expert = _layer.Experts[unit.Expert];
                if (item.Part == Part.Down)
                {
                    var wait = new SpinWait();
                    while (Volatile.Read(ref unit.Ready) == 0)
                    {
                        if (_failed)
                            return;
                        wait.SpinOnce(sleep1Threshold: -1);
                    }
                    expert.Down.MultiplyRows(unit.Down, item.Start, item.End);
                    continue;
                }
                if (item.Part == Part.Gate)
                    expert.Gate.MultiplyRows(unit.Gate, item.Start, item.End);
                else
                    expert.Up.MultiplyRows(unit.Up, item.Start, item.End);
                if (Interlocked.Decrement(ref unit.Remaining) == 0)
                {
                    // The last gate or up chunk of the unit: h = silu(gate) * up, in place of gate, is down's input.
                    var g = new Span<float>(unit.Gate.Y, unit.Count * _inter);
                    Activations.SiluMultiply(g, new ReadOnlySpan<float>(unit.Up.Y, unit.Count * _inter), g);
                    expert.Down.PrepareActivations(unit.Down);
                    Volatile.Write(ref unit.Ready, 1);
                }
            }
        }
        catch
        {
            _failed = true; // down chunks waiting on a unit that will never be ready give up
            throw;
        }
    }

    /// <summary>After the job: Output[t] = Σ over t's experts, ascending, of weight · expert output.</summary>
    public void Combine()
    {
        Span<float> output = _batch.Output, results = _out.Span;
        ReadOnlySpan<float> weights = _batch.Weights;
        output.Clear();
        int hidden = _hidden;
        for (int u = 0; u < _unitCount; u++)
        {
            Unit unit = _units[u];
            for (int i = unit.First; i < unit.First + unit.Count; i++)
            {
                int slot = _slots[i];
                Span<float> target = output.Slice(slot / _topK * hidden, hidden);
                TensorPrimitives.MultiplyAdd(results.Slice(i * hidden, hidden), weights[slot], target, target);
            }
        }
        for (int u = 0; u < _unitCount; u++)
        {
            _units[u].Gate.Finish();
            _units[u].Up.Finish();
            _units[u].Down.Finish();
        }
    }

    private static void Grow(ref int[] array, int length)
    {
        if (array.Length < length)
            array = new int[Math.Max(length, 2 * array.Length)];
    }

    private static void EnsureCapacity(ref PinnedArray<float> array, int length)
    {
        if (array.Length < length)
            array = PinnedArray<float>.Zeroed(Math.Max(length, 2 * array.Length));
    }
}
