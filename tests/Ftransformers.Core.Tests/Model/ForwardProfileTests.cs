using System.Diagnostics;
using System.Diagnostics.Tracing;
using Ftransformers.Backends;
using Ftransformers.Formats;
using Ftransformers.Inference;
using Ftransformers.Model;
using NUnit.Framework;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class ForwardProfileTests
{
    private static DeepSeekV3Model Tiny(ForwardProfile? profile, TensorDType dtype = TensorDType.BF16, Precision? precision = null) =>
        DeepSeekV3Model.FromCheckpoint(SyntheticModels.Tiny, SyntheticCheckpoint.CreateInMemory(SyntheticModels.Tiny, seed: 1, dtype),
            new ModelLoadOptions { Profile = profile, CpuThreads = 1, Precision = precision });

    [Test]
    public void Profile_CountsDecodeAndPrefillStepsApart_AndProjectsTheDecodeStep()
    {
        var profile = new ForwardProfile();
        using DeepSeekV3Model model = Tiny(profile);
        var cache = new SequenceKvCache(model.Config);
        model.Forward([0, 5, 9, 14], cache);
        ForwardProfileSnapshot s = profile.Snapshot();
        Assert.That((s.Steps, s.Prefill.Steps, s.Prefill.Tokens), Is.EqualTo((0L, 1L, 4L)), "a prefill step is not a decode step");

        model.Forward([7], cache);
        model.Forward([8], cache);
        s = profile.Snapshot();
        Assert.That((s.Steps, s.Decode.Sequences, s.DenseLayers, s.MoeLayers), Is.EqualTo((2L, 2L, 1, 2)));
        Assert.That(new[] { s.HeadPerStep, s.AttentionPerLayer, s.DenseMlpPerLayer, s.MoePerLayer }, Has.All.GreaterThan(TimeSpan.Zero));
        Assert.That(s.ProjectStep(), Is.EqualTo(s.HeadPerStep + 3 * (s.AttentionPerLayer + s.DenseMlpPerLayer) + 58 * (s.AttentionPerLayer + s.MoePerLayer)));
        Assert.That(s.ProjectStep(1, 2)!.Value.TotalMilliseconds, Is.EqualTo(s.StepTime.TotalMilliseconds).Within(1e-3), "at the model's own depth, the measured step");
        Assert.That(s.Decode.Total(ModelPart.SharedExperts).Time, Is.LessThanOrEqualTo(s.Decode.Total(ModelPart.RoutedExperts).Time), "shared experts run inside the routed experts' time");

        profile.Reset();
        Assert.That(profile.Snapshot().Steps, Is.Zero);
        Assert.That(profile.Snapshot().ProjectStep(), Is.Null);
    }

    // The weights each part reads, counted from the checkpoint's tensors: matrices as stored (F32 precision over F32
    // weights and BF16 over BF16 compute in place), norm and bias vectors as the F32 the model keeps them in.
    [TestCase(TensorDType.F32, "f32")]
    [TestCase(TensorDType.BF16, "bf16")]
    public void Profile_BytesPerPart_AreTheCheckpointsWeightBytes(TensorDType dtype, string preset)
    {
        DeepSeekV3Config c = SyntheticModels.Tiny;
        using Checkpoint checkpoint = SyntheticCheckpoint.CreateInMemory(c, seed: 1, dtype);
        long Bytes(Func<string, bool> select) => checkpoint.TensorNames.Where(select).Sum(n => checkpoint.Info(n) is var t && t.Shape.Length == 1 ? t.ElementCount * 4 : t.ByteLength);

        var profile = new ForwardProfile();
        using DeepSeekV3Model model = Tiny(profile, dtype, Precision.Parse(preset));
        var cache = new SequenceKvCache(model.Config);
        model.Forward([3, 4, 5], cache);
        profile.Reset();
        model.Forward([6], cache); // one token at position 3: it reads 4 cached rows per layer
        StepProfile decode = profile.Snapshot().Decode;
        PartTime Part(int layer, ModelPart part) => decode.Parts.Single(p => p.Layer == layer && p.Part == part);

        Assert.That(Part(-1, ModelPart.Embedding).WeightBytes, Is.EqualTo(checkpoint.Info("model.embed_tokens.weight").ByteLength / c.VocabSize));
        Assert.That(Part(-1, ModelPart.Head).WeightBytes, Is.EqualTo(Bytes(n => n is "lm_head.weight" or "model.norm.weight")));
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            Assert.That(Part(i, ModelPart.Attention).WeightBytes, Is.EqualTo(Bytes(n => n.StartsWith(p + "self_attn.") || n == p + "input_layernorm.weight")), $"layer {i} attention");
            Assert.That(Part(i, ModelPart.Attention).CacheBytes, Is.EqualTo(4L * (c.KvLoraRank + c.QkRopeHeadDim) * sizeof(float)), $"layer {i} KV rows");
            if (!c.IsMoeLayer(i))
            {
                Assert.That(Part(i, ModelPart.DenseMlp).WeightBytes, Is.EqualTo(Bytes(n => n.StartsWith(p + "mlp.") || n == p + "post_attention_layernorm.weight")), $"layer {i} dense MLP");
                continue;
            }
            Assert.That(Part(i, ModelPart.Router).WeightBytes, Is.EqualTo(Bytes(n => n.StartsWith(p + "mlp.gate.") || n == p + "post_attention_layernorm.weight")), $"layer {i} router");
            Assert.That(Part(i, ModelPart.SharedExperts).WeightBytes, Is.EqualTo(Bytes(n => n.StartsWith(p + "mlp.shared_experts."))), $"layer {i} shared experts");
            // One token chooses NumExpertsPerTok distinct experts, each read once.
            Assert.That(Part(i, ModelPart.RoutedExperts).WeightBytes, Is.EqualTo(c.NumExpertsPerTok * Bytes(n => n.StartsWith(p + "mlp.experts.0."))), $"layer {i} routed experts");
            Assert.That(Part(i, ModelPart.RoutedExperts).MultiplyAdds, Is.EqualTo(c.NumExpertsPerTok * 3L * c.HiddenSize * c.MoeIntermediateSize));
        }
        long attended = 4L * c.NumAttentionHeads * (2 * c.KvLoraRank + c.QkRopeHeadDim);
        long attentionParameters = checkpoint.TensorNames.Where(n => n.StartsWith("model.layers.0.self_attn.") || n == "model.layers.0.input_layernorm.weight").Sum(n => checkpoint.Info(n).ElementCount);
        Assert.That(Part(0, ModelPart.Attention).MultiplyAdds, Is.EqualTo(attentionParameters + attended), "weights once per token, plus scores and contexts over 4 positions per head");
    }

    [Test]
    public void Trace_WithNobodyListening_AllocatesNothing()
    {
        var trace = new StepTrace(profile: null);
        Run(trace);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            Run(trace);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        Assert.That(trace.Active, Is.False);

        // A profile alone counts into arrays made when the model configures it.
        var profile = new ForwardProfile();
        profile.Configure(layers: 3, denseLayers: 1, Precision.F32);
        var profiled = new StepTrace(profile);
        Run(profiled);
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            Run(profiled);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        Assert.That(profile.Snapshot().Decode.Steps, Is.EqualTo(1001));

        static void Run(StepTrace trace)
        {
            trace.Begin(StepKind.Decode);
            trace.Lap(-1, ModelPart.Scheduling);
            for (int layer = 0; layer < 3; layer++)
            {
                trace.Lap(layer, ModelPart.Attention, new PartWeights(100, 50), 10, 60);
                trace.Nested(Stopwatch.GetTimestamp(), Stopwatch.GetTimestamp(), layer, ModelPart.SharedExperts, new PartWeights(10, 5));
                trace.Lap(layer, ModelPart.RoutedExperts, new PartWeights(100, 50));
            }
            trace.End(1, 1);
        }
    }

    [Test]
    public void Forward_StepsAndParts_ReachEventListenersAndActivityListeners()
    {
        var spans = new List<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Ftransformers",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (spans) spans.Add(a); },
        };
        ActivitySource.AddActivityListener(activities);
        using var events = new RecordingListener();

        using DeepSeekV3Model model = Tiny(profile: null);
        var cache = new SequenceKvCache(model.Config);
        model.Forward([3, 4, 5], cache);
        model.Forward([6], cache);

        Activity[] steps = [.. spans.Where(a => a.OperationName == "ftransformers.step")];
        Assert.That(steps.Select(a => (string?)a.GetTagItem("ftransformers.step.kind")), Is.EqualTo(new[] { "Prefill", "Decode" }));
        Assert.That(steps.Select(a => a.GetTagItem("ftransformers.step.tokens")), Is.EqualTo(new object[] { 3, 1 }));
        Activity[] parts = [.. spans.Where(a => a.OperationName == "ftransformers.part" && a.ParentSpanId == steps[1].SpanId)];
        // Embedding, 3 x attention, a dense MLP, 2 x (router, shared, routed), head.
        Assert.That(parts, Has.Length.EqualTo(1 + 3 + 1 + 2 * 3 + 1));
        Assert.That(parts.Count(p => (string?)p.GetTagItem("ftransformers.part") == "RoutedExperts"), Is.EqualTo(2));
        Assert.That(parts, Has.All.Matches<Activity>(p => p.StartTimeUtc >= steps[1].StartTimeUtc && p.StartTimeUtc + p.Duration <= steps[1].StartTimeUtc + steps[1].Duration + TimeSpan.FromMilliseconds(1)));

        EventWrittenEventArgs[] written = events.Take();
        Assert.That(written.Count(e => e.EventId == FtransformersEventSource.StepEventId), Is.EqualTo(2));
        // The decode step's last routed-experts part: one token's distinct experts, each read once.
        EventWrittenEventArgs routed = written.Last(e => e.EventId == FtransformersEventSource.PartEventId && (int)e.Payload![2]! == (int)ModelPart.RoutedExperts);
        Assert.That((routed.Payload![0], routed.Payload[1]), Is.EqualTo(((int)StepKind.Decode, 2)));
        Assert.That(routed.Payload[4], Is.EqualTo(model.Config.NumExpertsPerTok * model.ExpertBackend.ExpertWeights(2).Bytes));
    }

    private sealed class RecordingListener : EventListener
    {
        private readonly List<EventWrittenEventArgs> _events = [];

        protected override void OnEventSourceCreated(EventSource source)
        {
            if (source.Name == "Ftransformers")
                EnableEvents(source, EventLevel.Verbose);
        }

        protected override void OnEventWritten(EventWrittenEventArgs e)
        {
            lock (_events)
                _events.Add(e);
        }

        public EventWrittenEventArgs[] Take()
        {
            lock (_events)
                return [.. _events];
        }
    }
}
