namespace Ftransformers.Backends;

/// <summary>
/// The CPU side of the model: the routed experts of every MoE layer. A call is split so that the attention side can
/// compute the shared experts while the routed ones run: <see cref="Submit"/> starts a batch and returns,
/// <see cref="Wait"/> completes it. Calls come from one thread; one batch is in flight at a time.
/// </summary>
public interface IExpertBackend : IDisposable
{
    /// <summary>The name options select it by (e.g. <c>cpu</c>).</summary>
    string Name { get; }

    /// <summary>
    /// Starts computing, for every token t of <paramref name="batch"/>, Output[t] = Σ over its chosen experts e of
    /// weight · expert_e(Input[t]), summed in ascending expert id. The batch must not change until <see cref="Wait"/>.
    /// </summary>
    void Submit(ExpertBatch batch);

    /// <summary>Waits until the batch of the last <see cref="Submit"/> is done; throws what its computation threw.</summary>
    void Wait();

    /// <summary>The weights of one routed expert of <paramref name="layer"/> (gate, up and down), as stored; a step reads each chosen expert once.</summary>
    PartWeights ExpertWeights(int layer);
}
