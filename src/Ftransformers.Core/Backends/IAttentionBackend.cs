using Ftransformers.Memory;
using Ftransformers.Model;

namespace Ftransformers.Backends;

/// <summary>
/// The accelerator side of the model: embeddings, norms, MLA attention over the KV cache, the dense MLPs, the MoE
/// layers' router and shared experts, and the head. It holds the hidden states of the step in its own memory; the
/// layer loop (the model, <c>DeepSeekV3Model</c>) drives it call by call, and hands the routed experts to an
/// <see cref="IExpertBackend"/> between <see cref="Route"/> and <see cref="FinishMoe"/>. Calls come from one thread,
/// in the order of the loop.
/// </summary>
public interface IAttentionBackend : IDisposable
{
    /// <summary>The name options select it by (e.g. <c>cpu</c>).</summary>
    string Name { get; }

    /// <summary>
    /// Makes a KV cache of <paramref name="slots"/> token slots in every layer, in this backend's memory (host, or
    /// device for an accelerator): the store <see cref="BeginStep"/> computes over. The caller disposes it.
    /// </summary>
    ILatentStore CreateKvCache(long slots, KvCacheDType dtype);

    /// <summary>Starts a step: embeds the batch's tokens; attention reads and writes <paramref name="kv"/> (from <see cref="CreateKvCache"/>).</summary>
    void BeginStep(ForwardBatch batch, ILatentStore kv);

    /// <summary>h += MLA(norm(h)) for layer <paramref name="layer"/>, writing the step's tokens' latents to the KV cache.</summary>
    void Attention(int layer);

    /// <summary>h += MLP(norm(h)) for a dense layer.</summary>
    void DenseMlp(int layer);

    /// <summary>
    /// For a MoE layer: norms h into the routed experts' input and routes each token (expert ids and weights), filling
    /// <paramref name="experts"/> for <see cref="IExpertBackend.Submit"/>.
    /// </summary>
    void Route(int layer, ExpertBatch experts);

    /// <summary>Computes the shared experts of a MoE layer on the normed input of <see cref="Route"/>; runs while the routed experts do.</summary>
    void SharedExperts(int layer);

    /// <summary>h += shared + routed, with the routed sum of <paramref name="experts"/> complete.</summary>
    void FinishMoe(int layer, ExpertBatch experts);

    /// <summary>Final norm and head for the batch's logit rows: [LogitCount, vocab] into <paramref name="logits"/>.</summary>
    void Logits(Span<float> logits);

    /// <summary>
    /// The weights <paramref name="part"/> of <paramref name="layer"/> reads per step, as this backend stores them
    /// (profiles judge achieved bandwidth by it): <see cref="ModelPart.Attention"/>, <see cref="ModelPart.DenseMlp"/>,
    /// <see cref="ModelPart.Router"/> and <see cref="ModelPart.SharedExperts"/> per layer (zero where the layer has no
    /// such part); <see cref="ModelPart.Embedding"/> is one token's row, <see cref="ModelPart.Head"/> the final norm and
    /// lm_head (the layer is ignored for both). Other parts read no weights of this backend.
    /// </summary>
    PartWeights WeightsOf(ModelPart part, int layer);
}
