using Ftransformers.Model;
using Ftransformers.Threading;

namespace Ftransformers.Backends.Cpu;

/// <summary>One MoE layer's routed experts, and which rows of them each node holds and computes.</summary>
/// <param name="Experts">The experts, by id.</param>
/// <param name="GateRows">Node n computes gate and up rows [GateRows[n], GateRows[n + 1]).</param>
/// <param name="DownRows">Node n computes down rows [DownRows[n], DownRows[n + 1]).</param>
internal sealed record RoutedExperts(Mlp[] Experts, int[] GateRows, int[] DownRows)
{
    /// <summary>One expert's weights (all of a layer's are the same shape and format).</summary>
    public PartWeights ExpertWeights { get; } = Experts[0].Footprint;
}

/// <summary>
/// The routed experts on the CPU. With several NUMA nodes, every expert's rows are split across the nodes in
/// proportion to their threads: each node's rows are copied into memory placed on that node (bound where the OS
/// allows it, and first touched by that node's threads) and computed by that node's threads, so no weight is stored
/// twice and none is read across the socket link. A layer's routed work is one job over the pool
/// (<see cref="RoutedExpertsJob"/>); <see cref="Submit"/> starts it on the workers, and the caller joins it in
/// <see cref="Wait"/> after computing the shared experts.
/// </summary>
internal sealed class CpuExpertBackend : IExpertBackend
{
    private readonly ComputePool? _pool;
    private readonly RoutedExperts?[] _layers;
    private readonly RoutedExpertsJob _job;
    private readonly NodePlacement? _placement;
    private readonly int[] _counts, _threads;
    private bool _submitted;

    public CpuExpertBackend(BackendContext context)
        : this(context.Pool, context.Config.HiddenSize, context.Config.MoeIntermediateSize, context.Config.NumExpertsPerTok, context.Config.NumHiddenLayers, Loader(context))
    {
    }

    /// <summary>A backend over the experts <paramref name="loadLayer"/> gives for each of <paramref name="layers"/> layers (null where a layer has none), placed on the pool's nodes.</summary>
    internal CpuExpertBackend(ComputePool? pool, int hidden, int intermediate, int topK, int layers, Func<int, Mlp[]?> loadLayer)
    {
        _pool = pool;
        int nodes = _pool?.NodeCount ?? 1;
        _counts = new int[nodes];
        _threads = [.. Enumerable.Range(0, nodes).Select(n => _pool?.ThreadsOn(n) ?? 1)];
        _job = new RoutedExpertsJob(hidden, intermediate, topK);
        if (nodes > 1)
            _placement = new NodePlacement(_pool!);
        _layers = new RoutedExperts?[layers];
        for (int i = 0; i < _layers.Length; i++)
        {
            // One layer at a time: a layer's experts are placed before the next one's are loaded.
            if (loadLayer(i) is not { } experts)
                continue;
            int[] gateRows = SplitRows(experts[0].Gate, nodes), downRows = SplitRows(experts[0].Down, nodes);
            if (_placement != null)
                for (int e = 0; e < experts.Length; e++)
                    experts[e] = new Mlp(_placement.Place(experts[e].Gate, gateRows), _placement.Place(experts[e].Up, gateRows), _placement.Place(experts[e].Down, downRows));
            _layers[i] = new RoutedExperts(experts, gateRows, downRows);
        }
    }

    // A layer's routed experts from the checkpoint, by their tensor names.
    private static Func<int, Mlp[]?> Loader(BackendContext context)
    {
        DeepSeekV3Config config = context.Config;
        var weights = new WeightLoader(context.Checkpoint, config.Fp8BlockSize, context.Precision, pool: null);
        // A layer's experts load on the compute threads' cores: quantizing at load, or repacking for this CPU's kernels, is per expert.
        return layer =>
        {
            if (!config.IsMoeLayer(layer))
                return null;
            var experts = new Mlp[config.NRoutedExperts];
            var failures = new Exception?[experts.Length];
            Parallel.For(0, experts.Length, new ParallelOptions { MaxDegreeOfParallelism = context.Pool?.ThreadCount ?? 1 }, e =>
            {
                try
                {
                    experts[e] = Mlp.Load(weights, $"model.layers.{layer}.mlp.experts.{e}", config.HiddenSize, config.MoeIntermediateSize, context.Precision.RoutedExperts);
                }
                catch (Exception failure)
                {
                    failures[e] = failure;
                }
            });
            // The lowest expert's error, as a sequential load names it.
            if (failures.FirstOrDefault(f => f != null) is { } first)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
            return experts;
        };
    }

    public string Name => "cpu";

    /// <summary>The experts of a MoE layer.</summary>
    internal RoutedExperts Layer(int layer) => _layers[layer] ?? throw new ArgumentException($"Layer {layer} has no routed experts.", nameof(layer));

    // Rows in proportion to each node's threads, cut at the matrix's row units (a row group is never split).
    private int[] SplitRows(WeightMatrix matrix, int nodes)
    {
        int unit = matrix.RowAlignment, units = (matrix.Rows + unit - 1) / unit, threads = _pool?.ThreadCount ?? 1, before = 0;
        var bounds = new int[nodes + 1];
        for (int n = 0; n < nodes; n++)
        {
            before += _pool?.ThreadsOn(n) ?? 1;
            bounds[n + 1] = Math.Min(matrix.Rows, (int)((long)units * before / threads) * unit);
        }
        bounds[nodes] = matrix.Rows;
        return bounds;
    }

    public void Submit(ExpertBatch batch)
    {
        if (_submitted)
            throw new InvalidOperationException("A routed-experts batch is already in flight; Wait for it first.");
        if (batch.TopK != _job.TopK || batch.Hidden != _job.Hidden)
            throw new ArgumentException($"The batch has {batch.Hidden} values and {batch.TopK} experts per token; the model has {_job.Hidden} and {_job.TopK}.", nameof(batch));
        _job.Prepare(Layer(batch.Layer), batch, _threads);
        _job.CountItems(_counts);
        _submitted = true;
        _pool?.Start(_job, _counts);
    }

    public void Wait()
    {
        if (!_submitted)
            throw new InvalidOperationException("No routed-experts batch was submitted.");
        _submitted = false;
        if (_pool != null)
            _pool.Join();
        else
            _job.Run(0, 0, _counts[0]);
        _job.Combine();
    }

    public PartWeights ExpertWeights(int layer) => _layers[layer]?.ExpertWeights ?? default;

    public void Dispose() => _placement?.Dispose();
}
