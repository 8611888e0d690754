using Ftransformers.Backends;
using Ftransformers.Formats;
using Ftransformers.Model;
using Ftransformers.Tests.Serving;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Backends;

/// <summary>
/// Conformance of the expert side: routed sums against a float64 reference computed from the checkpoint's own tensors,
/// for routings that share experts, share none, or put every token on one expert; and the overlap of the shared
/// experts with the routed ones changing nothing.
/// </summary>
[TestFixtureSource(typeof(BackendSetup), nameof(BackendSetup.All))]
public class RoutedExpertsTests(BackendSetup setup)
{
    private const int MoeLayer = 1;
    // The tiny model at a width where every expert has several row units per node, in F32 as stored.
    private static readonly DeepSeekV3Config Config = SyntheticModels.Tiny with { MoeIntermediateSize = 96, HiddenSize = 160 };

    private DeepSeekV3Model _model = null!;
    private Checkpoint _reference = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _model = setup.Synthetic(Config);
        _reference = SyntheticCheckpoint.CreateInMemory(Config, seed: 1);
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _model.Dispose();
        _reference.Dispose();
    }

    public enum Routing { Random, NoExpertInCommon, AllOnOneExpert }

    [TestCase(Routing.Random, 1)]
    [TestCase(Routing.Random, 7)]
    [TestCase(Routing.NoExpertInCommon, 4)]
    [TestCase(Routing.AllOnOneExpert, 70)]
    public void RoutedSum_MatchesFloat64OfTheCheckpoint(Routing routing, int tokens) => AssertRoutedSum(_model, _reference, routing, tokens);

    // A checkpoint may store an expert's gate and up in different dtypes; loaded as stored they become different
    // formats (here BF16 gate, F32 up), and each must read the tokens' input as it is.
    [TestCase(Routing.Random, 7)]
    [TestCase(Routing.AllOnOneExpert, 70)]
    public void RoutedSum_OfGateAndUpStoredInDifferentDtypes_MatchesFloat64(Routing routing, int tokens)
    {
        var writer = new SafetensorsWriter();
        foreach (string name in _reference.TensorNames)
        {
            long[] shape = _reference.Info(name).Shape;
            float[] values = _reference.ReadSingle(name);
            if (name.Contains(".mlp.experts.", StringComparison.Ordinal) && name.EndsWith(".gate_proj.weight", StringComparison.Ordinal))
            {
                var bits = new ushort[values.Length];
                Ftransformers.Kernels.BFloat16.FromSingle(values, bits);
                writer.Add(name, TensorDType.BF16, shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
            }
            else
                writer.AddF32(name, shape, values);
        }
        using Checkpoint mixed = Checkpoint.FromFiles("mixed", [SafetensorsFile.FromImage("mixed", writer.ToImage())]);
        using DeepSeekV3Model model = DeepSeekV3Model.FromCheckpoint(Config, mixed, setup.Apply());
        var expert = ((Ftransformers.Backends.Cpu.CpuExpertBackend)model.ExpertBackend).Layer(MoeLayer).Experts[0];
        Assert.That(expert.Gate.GetType(), Is.Not.EqualTo(expert.Up.GetType()), "the gate and up load as different formats");
        AssertRoutedSum(model, mixed, routing, tokens);
    }

    private void AssertRoutedSum(DeepSeekV3Model model, Checkpoint reference, Routing routing, int tokens)
    {
        var random = new Random(tokens * 31 + (int)routing);
        int k = Config.NumExpertsPerTok, hidden = Config.HiddenSize, experts = Config.NRoutedExperts;
        var batch = new ExpertBatch(hidden, k);
        batch.Reset(MoeLayer, tokens);
        for (int i = 0; i < batch.Input.Length; i++)
            batch.Input[i] = (float)(random.NextDouble() * 2 - 1);
        for (int t = 0; t < tokens; t++)
        {
            int[] chosen = routing switch
            {
                Routing.NoExpertInCommon => [.. Enumerable.Range(t * k, k)],                                       // 4 tokens x 4 = all 16, disjoint
                Routing.AllOnOneExpert => [5, .. Enumerable.Range(0, experts).Where(e => e != 5).OrderBy(_ => random.Next()).Take(k - 1)],
                _ => [.. Enumerable.Range(0, experts).OrderBy(_ => random.Next()).Take(k)],
            };
            chosen.CopyTo(batch.Experts.Slice(t * k, k));
            for (int j = 0; j < k; j++)
                batch.Weights[t * k + j] = (float)(0.1 + random.NextDouble());
        }

        model.ExpertBackend.Submit(batch);
        model.ExpertBackend.Wait();

        double[] expected = Reference(batch, reference);
        for (int t = 0; t < tokens; t++)
        {
            float[] actual = batch.Output.Slice(t * hidden, hidden).ToArray();
            Assert.That(Exactness.RelativeError(actual, [.. expected.AsSpan(t * hidden, hidden).ToArray().Select(v => (float)v)]), Is.LessThanOrEqualTo(Exactness.RelativeBound), $"token {t}");
        }
    }

    // Σ over a token's choices of weight · down(silu(gate x) · up x), in float64 from the stored tensors.
    private static double[] Reference(ExpertBatch batch, Checkpoint reference)
    {
        int k = batch.TopK, hidden = Config.HiddenSize, inter = Config.MoeIntermediateSize;
        var result = new double[batch.Tokens * hidden];
        var h = new double[inter];
        for (int t = 0; t < batch.Tokens; t++)
        {
            ReadOnlySpan<float> x = batch.Input.Slice(t * hidden, hidden);
            for (int j = 0; j < k; j++)
            {
                string prefix = $"model.layers.{MoeLayer}.mlp.experts.{batch.Experts[t * k + j]}";
                float[] gate = reference.ReadSingle(prefix + ".gate_proj.weight"), up = reference.ReadSingle(prefix + ".up_proj.weight"), down = reference.ReadSingle(prefix + ".down_proj.weight");
                for (int r = 0; r < inter; r++)
                {
                    double g = 0, u = 0;
                    for (int c = 0; c < hidden; c++)
                    {
                        g += (double)gate[r * hidden + c] * x[c];
                        u += (double)up[r * hidden + c] * x[c];
                    }
                    h[r] = g / (1 + Math.Exp(-g)) * u;
                }
                for (int r = 0; r < hidden; r++)
                {
                    double y = 0;
                    for (int c = 0; c < inter; c++)
                        y += (double)down[r * inter + c] * h[c];
                    result[t * hidden + r] += batch.Weights[t * k + j] * y;
                }
            }
        }
        return result;
    }

    [Test]
    public void SharedExpertsOverlappingTheRoutedOnes_GiveTheSameLogits_AsRunningThemAfter()
    {
        int[] prompt = [.. Enumerable.Range(0, 23).Select(i => (i * 37 + 11) % Config.VocabSize)];
        float[] overlapped = RunLoop(prompt, overlap: true), sequential = RunLoop(prompt, overlap: false);
        Assert.That(overlapped, Is.EqualTo(sequential));
        Assert.That(overlapped, Is.EqualTo(_model.Forward(prompt, new SequenceKvCache(Config), allPositions: true)), "the model's own loop");
    }

    // The layer loop of DeepSeekV3Model, with the shared experts either between Submit and Wait or after Wait.
    private float[] RunLoop(int[] tokens, bool overlap)
    {
        var cache = new SequenceKvCache(Config);
        cache.Reserve(tokens.Length);
        var batch = new ForwardBatch();
        batch.Clear(cache.PageSize);
        batch.AddSequence(tokens, 0, cache.PageTable, logits: true, allLogits: true);
        IAttentionBackend attention = _model.AttentionBackend;
        IExpertBackend experts = _model.ExpertBackend;
        var routed = new ExpertBatch(Config.HiddenSize, Config.NumExpertsPerTok);
        attention.BeginStep(batch, cache);
        for (int i = 0; i < Config.NumHiddenLayers; i++)
        {
            attention.Attention(i);
            if (!Config.IsMoeLayer(i))
            {
                attention.DenseMlp(i);
                continue;
            }
            attention.Route(i, routed);
            if (overlap)
            {
                experts.Submit(routed);
                attention.SharedExperts(i);
                experts.Wait();
            }
            else
            {
                experts.Submit(routed);
                experts.Wait();
                attention.SharedExperts(i);
            }
            attention.FinishMoe(i, routed);
        }
        var logits = new float[tokens.Length * Config.VocabSize];
        attention.Logits(logits);
        return logits;
    }

    [Test]
    public void AnExpertIdOutsideTheLayer_IsRefusedNamingIt_AndTheNextBatchStillRuns()
    {
        var batch = new ExpertBatch(Config.HiddenSize, Config.NumExpertsPerTok);
        batch.Reset(MoeLayer, 1);
        batch.Input.Fill(0.5f);
        batch.Weights.Fill(1f);
        int[] bad = [0, 1, 2, Config.NRoutedExperts];
        bad.CopyTo(batch.Experts);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _model.ExpertBackend.Submit(batch));
        Assert.That(e!.Message, Does.Contain($"Expert id {Config.NRoutedExperts}"));
        Assert.Throws<InvalidOperationException>(_model.ExpertBackend.Wait, "nothing was submitted");

        batch.Experts[3] = 3;
        _model.ExpertBackend.Submit(batch);
        _model.ExpertBackend.Wait();
        Assert.That(batch.Output.ToArray(), Has.Some.Not.EqualTo(0f));
    }
}
