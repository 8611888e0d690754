using Ftransformers.Memory;
using Ftransformers.Model;
using Ftransformers.Tests.Serving;
using Ftransformers.Verification;
using NUnit.Framework;
using Ftransformers.Inference;

namespace Ftransformers.Tests.Backends;

/// <summary>Conformance: a token's result does not depend on how its step was cut (chunks) or what else ran in it (batches).</summary>
[TestFixtureSource(typeof(BackendSetup), nameof(BackendSetup.All))]
public class BatchedForwardTests(BackendSetup setup)
{
    private DeepSeekV3Model _fixture = null!, _synthetic = null!, _quantized = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _fixture = setup.Load(Fixtures.TinyV3);
        _synthetic = setup.Synthetic(SyntheticModels.Tiny);
        // W8A8 + INT4: activations are quantized per token (per 32-block for INT4), so batching must not change a token's result.
        _quantized = setup.Load(Fixtures.TinyV3, Precision.W8A8Int4);
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _fixture.Dispose();
        _synthetic.Dispose();
        _quantized.Dispose();
    }

    private DeepSeekV3Model Model(string name) => name switch { "fixture" => _fixture, "w8a8-int4" => _quantized, _ => _synthetic };

    // Pages, and the rows they address in a cache the model's attention backend makes.
    private static (KvCachePool Pool, ILatentStore Kv) Cache(DeepSeekV3Model model, int pageSize, int pages, KvCacheDType dtype = KvCacheDType.F32)
    {
        var pool = new KvCachePool(pageSize, pages);
        return (pool, model.AttentionBackend.CreateKvCache(pool.CapacityTokens, dtype));
    }

    private static int[] Prompt(string name, int length)
    {
        if (name is "fixture" or "w8a8-int4")
            return GoldenPrompt.ReadAll(Path.Combine(Fixtures.TinyV3, "golden.safetensors"))[2].Tokens[..length];
        var random = new Random(length);
        return Enumerable.Range(0, length).Select(_ => random.Next(2, 1024)).ToArray();
    }

    private static void Grow(KvCachePool pool, List<int> table, int tokens)
    {
        while (table.Count < pool.PagesFor(tokens))
            table.Add(pool.Allocate());
    }

    private static List<float[]> Rows(float[] logits, int vocab) =>
        Enumerable.Range(0, logits.Length / vocab).Select(r => logits.AsSpan(r * vocab, vocab).ToArray()).ToList();

    [Test]
    public void ChunkedPrefill_OverPages_EqualsOneFullPrefill([Values("fixture", "synthetic", "w8a8-int4")] string name, [Values(1, 7, 64)] int chunk)
    {
        DeepSeekV3Model model = Model(name);
        int vocab = model.Config.VocabSize;
        int[] prompt = Prompt(name, 100);
        var full = Rows(model.Forward(prompt, new SequenceKvCache(model.Config), allPositions: true), vocab);
        Exactness.AssertRowsMatch(ChunkedPrefill(model, prompt, chunk), full, $"{name}, chunks of {chunk}");
    }

    // A step whose scores outgrow the score buffer (128 heads over more than 1024 positions: 32 MB) attends its tokens
    // a part at a time, even inside a group of tokens from two sequences; each token must still get the bits it gets
    // from chunks small enough to attend at once.
    [Test]
    public void PrefillBeyondTheScoreBuffer_EqualsChunksThatFitIt()
    {
        using DeepSeekV3Model model = setup.Synthetic(SyntheticModels.Tiny with { NumAttentionHeads = 128, NumHiddenLayers = 1 });
        int vocab = model.Config.VocabSize;
        int[][] prompts = [Prompt("synthetic", 30), Prompt("synthetic", 1040)];
        var (pool, kv) = Cache(model, pageSize: 16, pages: 2 + 65);
        using ILatentStore _ = kv;
        var batch = new ForwardBatch();
        batch.Clear(pool.PageSize);
        foreach (int[] prompt in prompts)
        {
            var table = new List<int>();
            Grow(pool, table, prompt.Length);
            batch.AddSequence(prompt, 0, table, logits: true, allLogits: true);
        }
        var logits = new float[(prompts[0].Length + prompts[1].Length) * vocab];
        model.Forward(batch, kv, logits);
        var together = Rows(logits, vocab);
        Exactness.AssertRowsMatch(together[..prompts[0].Length], ChunkedPrefill(model, prompts[0], chunk: 16), "30 tokens beside 1040, and alone in chunks of 16");
        Exactness.AssertRowsMatch(together[prompts[0].Length..], ChunkedPrefill(model, prompts[1], chunk: 16), "1040 tokens beside 30, and alone in chunks of 16");
    }

    // Every position's logits of a prompt prefilled chunk after chunk over pages of 16 positions.
    private static List<float[]> ChunkedPrefill(DeepSeekV3Model model, int[] prompt, int chunk)
    {
        int vocab = model.Config.VocabSize;
        var (pool, kv) = Cache(model, pageSize: 16, pages: (prompt.Length + 15) / 16);
        using ILatentStore _ = kv;
        var table = new List<int>();
        var batch = new ForwardBatch();
        var chunked = new List<float[]>();
        for (int start = 0; start < prompt.Length; start += chunk)
        {
            int count = Math.Min(chunk, prompt.Length - start);
            Grow(pool, table, start + count);
            batch.Clear(pool.PageSize);
            batch.AddSequence(prompt.AsSpan(start, count), start, table, logits: true, allLogits: true);
            var logits = new float[count * vocab];
            model.Forward(batch, kv, logits);
            chunked.AddRange(Rows(logits, vocab));
        }
        return chunked;
    }

    [Test]
    public void OneBatchOfSeveralSequences_EqualsEachSequenceAlone([Values("fixture", "synthetic", "w8a8-int4")] string name)
    {
        DeepSeekV3Model model = Model(name);
        int vocab = model.Config.VocabSize;
        int[][] prompts = [Prompt(name, 37), Prompt(name, 5), Prompt(name, 90)];
        var solo = prompts.Select(p => Rows(model.Forward(p, new SequenceKvCache(model.Config), allPositions: true), vocab)).ToArray();

        // Step 1 prefills the first 30 tokens of each; step 2 the rest, in another order. Pages are interleaved.
        var (pool, kv) = Cache(model, pageSize: 4, pages: 40);
        using ILatentStore _ = kv;
        var tables = prompts.Select(_ => new List<int>()).ToArray();
        var results = prompts.Select(_ => new List<float[]>()).ToArray();
        var batch = new ForwardBatch();
        foreach (var (order, from, to) in new[] { (new[] { 0, 1, 2 }, 0, 30), (new[] { 2, 0, 1 }, 30, int.MaxValue) })
        {
            batch.Clear(pool.PageSize);
            var counts = new List<(int Sequence, int Count)>();
            for (bool grew = true; grew;)
            {
                grew = false;
                foreach (int s in order)
                    if (tables[s].Count < pool.PagesFor(Math.Min(prompts[s].Length, to)))
                    {
                        tables[s].Add(pool.Allocate());
                        grew = true;
                    }
            }
            foreach (int s in order)
            {
                int start = Math.Min(from, prompts[s].Length), count = Math.Min(prompts[s].Length, to) - start;
                if (count == 0)
                    continue;
                batch.AddSequence(prompts[s].AsSpan(start, count), start, tables[s], logits: true, allLogits: true);
                counts.Add((s, count));
            }
            var logits = new float[batch.LogitCount * vocab];
            model.Forward(batch, kv, logits);
            var rows = Rows(logits, vocab);
            int row = 0;
            foreach (var (s, count) in counts)
            {
                results[s].AddRange(rows.GetRange(row, count));
                row += count;
            }
        }
        for (int s = 0; s < prompts.Length; s++)
            Exactness.AssertRowsMatch(results[s], solo[s], $"{name}, sequence {s}");
    }

    [Test]
    public void Bf16Cache_StaysCloseToF32_ButRoundsTheLatents()
    {
        DeepSeekV3Model model = _fixture;
        int vocab = model.Config.VocabSize;
        int[] prompt = Prompt("fixture", 100);
        var full = Rows(model.Forward(prompt, new SequenceKvCache(model.Config), allPositions: true), vocab);

        var (pool, kv) = Cache(model, pageSize: 16, pages: 7, KvCacheDType.BF16);
        using ILatentStore _ = kv;
        var table = new List<int>();
        Grow(pool, table, prompt.Length);
        var batch = new ForwardBatch();
        batch.Clear(pool.PageSize);
        batch.AddSequence(prompt, 0, table, logits: true, allLogits: true);
        var logits = new float[prompt.Length * vocab];
        model.Forward(batch, kv, logits);
        var rows = Rows(logits, vocab);
        double worst = Enumerable.Range(0, rows.Count).Max(i => Exactness.RelativeError(rows[i], full[i]));
        TestContext.Out.WriteLine($"BF16 KV cache: worst row relative error {worst:E2}");
        Assert.That(worst, Is.GreaterThan(0).And.LessThan(0.05));
    }
}
