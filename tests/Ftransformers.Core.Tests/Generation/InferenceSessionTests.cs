using Ftransformers.Generation;
using Ftransformers.Model;
using Ftransformers.Tokenization;
using Ftransformers.Verification;
using NUnit.Framework;
using Ftransformers.Inference;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Generation;

[TestFixture]
public class InferenceSessionTests
{
    private InferenceSession _fixture = null!;
    private InferenceSession _synthetic = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _fixture = InferenceSession.Load(Fixtures.TinyV3);
        _synthetic = InferenceSession.Load("synthetic:tiny");
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _fixture.Dispose();
        _synthetic.Dispose();
    }

    private static async Task<List<GenerationChunk>> Collect(IInferenceSession session, GenerationRequest request, CancellationToken ct = default)
    {
        var chunks = new List<GenerationChunk>();
        await foreach (GenerationChunk chunk in session.GenerateAsync(request, ct))
            chunks.Add(chunk);
        return chunks;
    }

    [Test]
    public async Task GreedyGeneration_FromPromptTokens_ReproducesTheReferenceContinuation()
    {
        foreach (GoldenPrompt golden in GoldenPrompt.ReadAll(Path.Combine(Fixtures.TinyV3, "golden.safetensors")))
        {
            var chunks = await Collect(_fixture, new GenerationRequest
            {
                PromptTokens = golden.Tokens, MaxTokens = golden.GreedyTokens.Length, Sampling = SamplingOptions.Greedy, IgnoreEos = true,
            });
            Assert.That(chunks.SelectMany(c => c.TokenIds), Is.EqualTo(golden.GreedyTokens), $"prompt {golden.Index}");
            Assert.That(chunks[^1].FinishReason, Is.EqualTo(FinishReason.Length));
            Assert.That(chunks[^1].Usage!.PromptTokens, Is.EqualTo(golden.Tokens.Length));
            Assert.That(chunks[^1].Usage!.CompletionTokens, Is.EqualTo(golden.GreedyTokens.Length));
            Assert.That(chunks.Take(chunks.Count - 1).All(c => c.FinishReason == null && c.Usage == null), Is.True);
        }
    }

    [Test]
    public async Task SameSeed_SameOutput_DifferentSeed_DifferentOutput()
    {
        GenerationRequest Request(int seed) => new() { Prompt = "seeded", MaxTokens = 24, IgnoreEos = true, Sampling = new SamplingOptions { Temperature = 1.5f, Seed = seed } };
        var a = (await Collect(_synthetic, Request(7))).SelectMany(c => c.TokenIds).ToArray();
        var b = (await Collect(_synthetic, Request(7))).SelectMany(c => c.TokenIds).ToArray();
        var c = (await Collect(_synthetic, Request(8))).SelectMany(c => c.TokenIds).ToArray();
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));
    }

    [Test]
    public async Task StreamedText_EqualsDecodeOfTheGeneratedTokens()
    {
        var chunks = await Collect(_synthetic, new GenerationRequest { Prompt = "text", MaxTokens = 40, IgnoreEos = true, Sampling = new SamplingOptions { Seed = 1 } });
        string streamed = string.Concat(chunks.Select(c => c.Text));
        Assert.That(streamed, Is.EqualTo(_synthetic.Tokenizer.Decode(chunks.SelectMany(c => c.TokenIds))));
    }

    [Test]
    public async Task EndOfSentence_StopsGeneration_WithoutEmittingItsText()
    {
        // Find a seed whose sampled continuation reaches EOS (id 1) within the budget, using IgnoreEos runs.
        for (int seed = 0; seed < 200; seed++)
        {
            var request = new GenerationRequest { PromptTokens = [0, 40, 41], MaxTokens = 64, Sampling = new SamplingOptions { Temperature = 3, Seed = seed } };
            var free = (await Collect(_synthetic, request with { IgnoreEos = true })).SelectMany(c => c.TokenIds).ToList();
            int eos = free.IndexOf(_synthetic.Tokenizer.EosTokenId);
            if (eos < 0)
                continue;
            var chunks = await Collect(_synthetic, request);
            Assert.That(chunks.SelectMany(c => c.TokenIds), Is.EqualTo(free.Take(eos + 1)));
            Assert.That(chunks[^1].FinishReason, Is.EqualTo(FinishReason.Stop));
            Assert.That(string.Concat(chunks.Select(c => c.Text)), Does.Not.Contain("end▁of▁sentence"));
            return;
        }
        Assert.Fail("No seed produced an end-of-sentence token; the test needs another prompt.");
    }

    [Test]
    public async Task StopString_EndsGeneration_AndIsNotEmitted()
    {
        var request = new GenerationRequest { PromptTokens = [0, 40, 41], MaxTokens = 40, IgnoreEos = true, Sampling = SamplingOptions.Greedy };
        var free = await Collect(_synthetic, request);
        string text = string.Concat(free.Select(c => c.Text));
        string stop = text.Substring(text.Length / 2, 1);
        var chunks = await Collect(_synthetic, request with { Stop = [stop] });
        Assert.That(string.Concat(chunks.Select(c => c.Text)), Is.EqualTo(text[..text.IndexOf(stop, StringComparison.Ordinal)]));
        Assert.That(chunks[^1].FinishReason, Is.EqualTo(FinishReason.Stop));
    }

    [Test]
    public async Task ChatMessages_AreRenderedWithTheChatFormat()
    {
        IReadOnlyList<int> ids = _synthetic.EncodePrompt(GenerationRequest.FromMessages([ChatMessage.System("S"), ChatMessage.User("hi")]));
        Assert.That(_synthetic.Tokenizer.Decode(ids), Is.EqualTo("<｜begin▁of▁sentence｜>S<｜User｜>hi<｜Assistant｜>"));
        var chunks = await Collect(_synthetic, GenerationRequest.FromMessages([ChatMessage.User("hi")], maxTokens: 3) with { IgnoreEos = true });
        Assert.That(chunks[^1].Usage!.CompletionTokens, Is.EqualTo(3));
    }

    [Test]
    public async Task Cancellation_StopsPromptly_AndTheSessionServesTheNextRequest()
    {
        using var cts = new CancellationTokenSource();
        int received = 0;
        Assert.CatchAsync<OperationCanceledException>(async () =>
        {
            await foreach (GenerationChunk _ in _synthetic.GenerateAsync(new GenerationRequest { Prompt = "x", MaxTokens = 1000, IgnoreEos = true }, cts.Token))
                if (++received == 3)
                    cts.Cancel();
        });
        Assert.That(received, Is.EqualTo(3));
        var next = await Collect(_synthetic, new GenerationRequest { Prompt = "x", MaxTokens = 2, IgnoreEos = true });
        Assert.That(next.SelectMany(c => c.TokenIds).Count(), Is.EqualTo(2));
    }

    [Test]
    public void OversizePrompt_IsRejectedWithItsLength()
    {
        var request = new GenerationRequest { PromptTokens = Enumerable.Repeat(5, _synthetic.Config.MaxPositionEmbeddings).ToArray() };
        var e = Assert.ThrowsAsync<ArgumentException>(async () => await Collect(_synthetic, request));
        Assert.That(e!.Message, Does.Contain($"{_synthetic.Config.MaxPositionEmbeddings} tokens"));
    }

    [Test]
    public void TokenOutsideVocabulary_IsRejected()
    {
        var e = Assert.ThrowsAsync<ArgumentException>(async () => await Collect(_synthetic, new GenerationRequest { PromptTokens = [0, 5000] }));
        Assert.That(e!.Message, Does.Contain("5000"));
    }

    [TestCase(0)]
    [TestCase(-3)]
    public void NonPositiveMaxTokens_IsRejected(int maxTokens)
    {
        Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await Collect(_synthetic, new GenerationRequest { Prompt = "x", MaxTokens = maxTokens }));
    }

    [Test]
    public void RequestWithTwoInputs_IsRejected()
    {
        var e = Assert.ThrowsAsync<ArgumentException>(async () => await Collect(_synthetic, new GenerationRequest { Prompt = "x", PromptTokens = [1] }));
        Assert.That(e!.Message, Does.Contain("exactly one"));
    }

    [Test]
    public void TokenizerLargerThanTheModelVocabulary_IsRejected()
    {
        DeepSeekV3Config small = SyntheticModels.Tiny with { VocabSize = 100 };
        using var model = DeepSeekV3Model.FromCheckpoint(small, SyntheticCheckpoint.CreateInMemory(small, 1));
        Assert.Throws<ArgumentException>(() => new InferenceSession(model, ByteTokenizer.Instance));
    }
}
