using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Ftransformers.Kernels;
using Ftransformers.Memory;
using Ftransformers.Threading;
using Ftransformers.Model;

namespace Ftransformers.Backends.Cpu;

/// <summary>
/// Multi-head latent attention in its absorbed form: the cache holds one normalized latent and one roped key per
/// token; each head's query is projected into latent space through kv_b's key rows, and its output is read out
/// of the attended latent through kv_b's value rows, so keys and values are never materialized per head.
/// </summary>
internal sealed class MlaAttention
{
    private readonly DeepSeekV3Config _config;
    private readonly RotaryEmbedding _rope;
    private readonly WeightMatrix? _qA, _q;
    private readonly float[]? _qANorm;
    private readonly WeightMatrix _kvA, _kvB, _o;
    private readonly float[] _kvANorm;
    private readonly float _softmaxScale;
    private readonly Int8Absorption? _int8Absorption;

    public MlaAttention(WeightLoader weights, DeepSeekV3Config config, RotaryEmbedding rope, int layer)
    {
        _config = config;
        _rope = rope;
        string p = $"model.layers.{layer}.self_attn";
        int hidden = config.HiddenSize, heads = config.NumAttentionHeads;
        WeightFormat format = weights.Precision.Attention;
        if (config.QLoraRank is int qRank)
        {
            _qA = weights.Matrix(p + ".q_a_proj.weight", qRank, hidden, format);
            _qANorm = weights.Vector(p + ".q_a_layernorm.weight", qRank);
            _q = weights.Matrix(p + ".q_b_proj.weight", heads * config.QkHeadDim, qRank, format);
        }
        else
        {
            _q = weights.Matrix(p + ".q_proj.weight", heads * config.QkHeadDim, hidden, format);
        }
        _kvA = weights.Matrix(p + ".kv_a_proj_with_mqa.weight", config.KvLoraRank + config.QkRopeHeadDim, hidden, format);
        _kvANorm = weights.Vector(p + ".kv_a_layernorm.weight", config.KvLoraRank);
        _kvB = weights.Matrix(p + ".kv_b_proj.weight", heads * (config.QkNopeHeadDim + config.VHeadDim), config.KvLoraRank, format);
        _o = weights.Matrix(p + ".o_proj.weight", hidden, heads * config.VHeadDim, format);
        _softmaxScale = (float)config.SoftmaxScale;
        if (_kvB is Int8WeightMatrix { Weights.BlockSize: var block } int8 && block == int8.Cols) // per-row scales (not Q8_0 blocks)
            _int8Absorption = new Int8Absorption(int8.Weights, heads, config.QkNopeHeadDim, config.VHeadDim);
    }

    /// <summary>The projections and norms a step reads (an INT8 kv_b's absorbed copy holds the same codes and scales).</summary>
    public PartWeights Footprint =>
        (_qA?.Footprint ?? default) + (_qANorm is { } qNorm ? WeightMatrix.VectorWeights(qNorm) : default) + _q!.Footprint
        + _kvA.Footprint + WeightMatrix.VectorWeights(_kvANorm) + _kvB.Footprint + _o.Footprint;

    /// <summary>
    /// Attends the tokens of <paramref name="batch"/> (rows of <paramref name="x"/>): writes each token's latent to
    /// its KV slot for <paramref name="layer"/>, then lets it attend causally to positions 0..p of its own sequence.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, Span<float> y, ForwardBatch batch, ILatentStore kv, int layer)
    {
        DeepSeekV3Config c = _config;
        int tokens = batch.TokenCount, heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, rank = c.KvLoraRank;
        int qkHead = c.QkHeadDim, vHead = c.VHeadDim, kvbHead = nope + vHead, width = rank + rope;
        float eps = (float)c.RmsNormEps;
        ReadOnlySpan<int> positions = batch.Positions, sequences = batch.Sequences;

        int maxVisible = 0;
        foreach (int p in positions)
            maxVisible = Math.Max(maxVisible, p + 1);
        int group = Math.Min(tokens, TokensPerGroup);
        // Each (token, head) row of scores spans whole blocks of positions; the scores of as many tokens as fit the budget
        // are held at once (one at least, as a single token always did, whatever its rows take).
        int stride = (maxVisible + AttentionBlocks.BlockPositions - 1) / AttentionBlocks.BlockPositions * AttentionBlocks.BlockPositions;
        int batchTokens = (int)Math.Clamp(ScoreBudgetBytes / ((long)heads * stride * sizeof(float)), 1, group);
        using var q = new PooledBuffer<float>(tokens * heads * qkHead);
        using var kvA = new PooledBuffer<float>(tokens * width);
        using var queries = new PooledBuffer<float>(group * heads * width);
        using var contexts = new PooledBuffer<float>(group * heads * rank);
        using var scores = new PooledBuffer<float>(batchTokens * heads * stride);
        using var angles = new PooledBuffer<float>(group * rope);
        using var attended = new PooledBuffer<float>(tokens * heads * vHead);

        if (_qA != null)
        {
            using var qa = new PooledBuffer<float>(tokens * _qA.Rows);
            _qA.Multiply(x, qa.Span, tokens);
            RmsNorm.ApplyRows(qa.Span, _qA.Rows, _qANorm, eps);
            _q!.Multiply(qa.Span, q.Span, tokens);
        }
        else
        {
            _q!.Multiply(x, q.Span, tokens);
        }

        // Every token's latent goes to the cache first: later tokens of the same sequence attend to earlier ones.
        _kvA.Multiply(x, kvA.Span, tokens);
        Span<float> cos = stackalloc float[rope / 2], sin = stackalloc float[rope / 2];
        for (int t = 0; t < tokens; t++)
        {
            Span<float> row = kvA.Span.Slice(t * width, width);
            RmsNorm.Apply(row[..rank], _kvANorm, eps, row[..rank]);
            _rope.Angles(positions[t], cos, sin);
            Rope.ApplyInterleaved(row[rank..], cos, sin);
            kv.Write(layer, batch.Slot(sequences[t], positions[t]), row);
        }

        // Per group of tokens, in stages over the compute pool: each head's query in latent space [q_nope W_uk | q_pe]
        // (over heads); then, for as many of the group's tokens as the score buffer holds, their scores over blocks of
        // cached positions (each block transposed once for all the heads and tokens of its unit) and, over heads, each
        // row's softmax and latent context, and after the group's last tokens the head's output through W_uv. A group
        // shares each widened row of kv_b, which decode batches of several sequences need.
        HeadWork work = HeadWork.ForThisThread();
        ComputePool? pool = _o.Pool;
        unsafe
        {
            // Pinned for the workers, which read and write these buffers through pointers.
            fixed (float* pq = q.Span, pQueries = queries.Span, pScores = scores.Span, pContexts = contexts.Span, pAttended = attended.Span, pAngles = angles.Span)
            {
                for (int t0 = 0; t0 < tokens; t0 += group)
                {
                    int n = Math.Min(group, tokens - t0);
                    long visibleSum = 0;
                    for (int t = t0; t < t0 + n; t++)
                    {
                        _rope.Angles(positions[t], angles.Span.Slice((t - t0) * rope, rope / 2), angles.Span.Slice((t - t0) * rope + rope / 2, rope / 2));
                        visibleSum += positions[t] + 1;
                    }
                    work.Start(this, kv, layer, batch, t0, n, stride, pq, pAngles, pQueries, pScores, pContexts, pAttended);
                    // Below 32K multiply-adds a head, handing heads to other threads costs more than it saves.
                    int minHeads = (int)Math.Clamp((1L << 15) / Math.Max(1, visibleSum * rank + (long)n * nope * rank), 1, heads);
                    ComputePool.RunOn(pool, heads, work.QueryStage(), minHeads);
                    for (int b0 = 0; b0 < n; b0 += batchTokens)
                    {
                        int b1 = Math.Min(n, b0 + batchTokens);
                        ComputePool.RunOn(pool, work.ScoreUnits(b0, b1, pool?.ThreadCount ?? 1), work.ScoreStage());
                        ComputePool.RunOn(pool, heads, work.ContextStage(outputs: b1 == n), minHeads);
                    }
                    work.Finish();
                }
            }
        }
        _o.Multiply(attended.Span, y, tokens);
    }

    // Tokens whose absorbed projections share one widening of each kv_b row, and whose attention shares each block of
    // cached positions.
    private const int TokensPerGroup = 64;

    // Scores held at once (at 2K positions, 32 tokens of 128 heads; at 40K, one token).
    private const long ScoreBudgetBytes = 32L << 20;

    // Scratch of a worker thread for one block of positions in F32: rows (position after position, zero past the
    // visible ones) and the block transposed (value after value, for the scores).
    [ThreadStatic]
    private static float[]? t_block;

    private static float[] BlockScratch(int width)
    {
        int length = 2 * AttentionBlocks.BlockPositions * width;
        return t_block is { } block && block.Length >= length ? block : t_block = new float[length];
    }

    // Row j of the sequence's cache in F32: the cache's own row, or one widened from BF16 into rowScratch.
    private static ReadOnlySpan<float> Latent(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int j, Span<float> rowScratch)
    {
        long slot = (long)pageTable[j / pageSize] * pageSize + j % pageSize;
        if (kv.DType == KvCacheDType.F32)
            return kv.RowF32(layer, slot);
        BFloat16.ToSingle(kv.RowBf16(layer, slot), rowScratch);
        return rowScratch;
    }

    // Positions [j0, j0 + BlockPositions) transposed into the block; positions from visible on are zero.
    private static unsafe void LoadTransposed(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int j0, int visible, float* rows, float* transposed)
    {
        int width = kv.RowWidth, block = AttentionBlocks.BlockPositions;
        for (int p = 0; p < block; p++)
        {
            if (j0 + p >= visible)
            {
                for (int k = 0; k < width; k++)
                    transposed[(long)k * block + p] = 0;
                continue;
            }
            ReadOnlySpan<float> row = Latent(kv, layer, pageTable, pageSize, j0 + p, new Span<float>(rows, width));
            for (int k = 0; k < width; k++)
                transposed[(long)k * block + p] = row[k];
        }
    }

    // Positions [j0, j0 + BlockPositions) as rows: straight from an F32 cache when they are visible and in consecutive
    // slots, else copied (widened, zero past the visible positions) into rows.
    private static unsafe float* LatentRows(ILatentStore kv, int layer, IReadOnlyList<int> pageTable, int pageSize, int j0, int visible, float* rows)
    {
        int width = kv.RowWidth, block = AttentionBlocks.BlockPositions;
        if (kv.DType == KvCacheDType.F32 && j0 + block <= visible && Consecutive(pageTable, pageSize, j0, block))
            return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(Latent(kv, layer, pageTable, pageSize, j0, default)));
        for (int p = 0; p < block; p++)
        {
            var row = new Span<float>(rows + (long)p * width, width);
            if (j0 + p >= visible)
                row.Clear();
            else
                Latent(kv, layer, pageTable, pageSize, j0 + p, row).CopyTo(row);
        }
        return rows;
    }

    // Whether positions [j0, j0 + count) lie in consecutive slots: a block longer than a page reads across pages that
    // follow each other in the cache (a long prompt's pages mostly do).
    private static bool Consecutive(IReadOnlyList<int> pageTable, int pageSize, int j0, int count)
    {
        for (int page = j0 / pageSize; page < (j0 + count - 1) / pageSize; page++)
            if (pageTable[page + 1] != pageTable[page] + 1)
                return false;
        return true;
    }

    // A group of tokens' attention, handed to the compute pool stage by stage; one per calling thread. Each stage runs
    // over its own units: heads for the queries and for the contexts and outputs, (run of one sequence's tokens, block
    // of positions, range of heads) for the scores.
    private sealed unsafe class HeadWork : IRangeWork
    {
        [ThreadStatic]
        private static HeadWork? t_current;

        private enum Stage { Queries, Scores, Contexts }

        private MlaAttention _attention = null!;
        private ILatentStore _kv = null!;
        private ForwardBatch _batch = null!;
        private int _layer, _first, _count, _stride;
        private float* _q, _angles, _queries, _scores, _contexts, _attended;

        // The current stage; for scores and contexts, the group's tokens [_b0, _b1) whose scores the buffer holds (token
        // _b0's rows first), and their runs of one sequence's tokens, [_runs[i], _runs[i + 1]), each seeing positions
        // below _visible[i].
        private Stage _stage;
        private int _b0, _b1;
        private bool _outputs;
        private readonly List<int> _runs = [], _visible = [];

        // Score units: a run, the first position of a block, and a range of heads.
        private readonly List<(int Run, int J0, int H0, int H1)> _units = [];

        public static HeadWork ForThisThread() => t_current ??= new HeadWork();

        // Tokens [first, first + count) of the batch; the pointers are pinned by the caller until Finish. Per token of
        // the group: angles holds cos then sin; queries and contexts hold all heads. q and attended cover the batch.
        // scores holds the rows of the tokens being attended, stride values per head.
        public void Start(MlaAttention attention, ILatentStore kv, int layer, ForwardBatch batch, int first, int count, int stride,
            float* q, float* angles, float* queries, float* scores, float* contexts, float* attended)
        {
            (_attention, _kv, _layer, _batch, _first, _count, _stride) = (attention, kv, layer, batch, first, count, stride);
            _q = q;
            _angles = angles;
            _queries = queries;
            _scores = scores;
            _contexts = contexts;
            _attended = attended;
        }

        public void Finish()
        {
            _attention = null!;
            _kv = null!;
            _batch = null!;
        }

        public HeadWork QueryStage()
        {
            _stage = Stage.Queries;
            return this;
        }

        // Takes the group's tokens [b0, b1), whose scores the buffer holds, for the next score and context stages: their
        // runs, and a score unit per block of positions a run's tokens see; where blocks are too few to keep every thread
        // busy (short contexts, the first tokens of a prompt), each block's heads are split too, in ranges of whole 8-row
        // tiles. Returns the units' count.
        public int ScoreUnits(int b0, int b1, int threads)
        {
            (_b0, _b1) = (b0, b1);
            _runs.Clear();
            _visible.Clear();
            _units.Clear();
            int block = AttentionBlocks.BlockPositions, heads = _attention._config.NumAttentionHeads, blocks = 0;
            for (int t = b0; t < b1;)
            {
                int sequence = _batch.Sequences[_first + t], end = t + 1, visible = Visible(t);
                while (end < b1 && _batch.Sequences[_first + end] == sequence)
                    visible = Math.Max(visible, Visible(end++));
                _runs.Add(t);
                _visible.Add(visible);
                blocks += (visible + block - 1) / block;
                t = end;
            }
            _runs.Add(b1);
            int ranges = Math.Clamp((4 * threads + blocks - 1) / blocks, 1, Math.Max(1, heads / 8));
            int headsPerRange = (heads + ranges - 1) / ranges;
            headsPerRange = Math.Min(heads, (headsPerRange + 7) / 8 * 8);
            for (int i = 0; i < _visible.Count; i++)
                for (int j0 = 0; j0 < _visible[i]; j0 += block)
                    for (int h0 = 0; h0 < heads; h0 += headsPerRange)
                        _units.Add((i, j0, h0, Math.Min(heads, h0 + headsPerRange)));
            return _units.Count;
        }

        // Scores of the tokens taken by ScoreUnits.
        public HeadWork ScoreStage()
        {
            _stage = Stage.Scores;
            return this;
        }

        // Softmax and contexts of the tokens taken by ScoreUnits, once their scores are done, and, after the group's
        // last tokens, the outputs.
        public HeadWork ContextStage(bool outputs)
        {
            (_stage, _outputs) = (Stage.Contexts, outputs);
            return this;
        }

        public void Run(int start, int end)
        {
            switch (_stage)
            {
                case Stage.Queries:
                    QueryHeads(start, end);
                    break;
                case Stage.Scores:
                    for (int u = start; u < end; u++)
                        ScoreBlock(_units[u].Run, _units[u].J0, _units[u].H0, _units[u].H1);
                    break;
                default:
                    AttendHeads(start, end);
                    if (_outputs)
                        OutputHeads(start, end);
                    break;
            }
        }

        // Queries: q_nope W_uk (in INT8, or row by row of kv_b, each row widened once for the group), then the roped q_pe.
        private void QueryHeads(int h0, int h1)
        {
            MlaAttention a = _attention;
            DeepSeekV3Config c = a._config;
            int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rope = c.QkRopeHeadDim, rank = c.KvLoraRank;
            int qkHead = c.QkHeadDim, kvbHead = nope + c.VHeadDim, width = rank + rope, n = _count;
            Span<float> row = rank <= 2048 ? stackalloc float[rank] : new float[rank];
            long qStride = (long)heads * qkHead;
            for (int h = h0; h < h1; h++)
            {
                for (int t = 0; t < n; t++)
                {
                    Span<float> query = Query(t, h, heads, width);
                    new Span<float>(_q + (_first + t) * qStride + h * qkHead + nope, rope).CopyTo(query[rank..]);
                    Rope.ApplyInterleaved(query[rank..], new ReadOnlySpan<float>(_angles + t * rope, rope / 2), new ReadOnlySpan<float>(_angles + t * rope + rope / 2, rope / 2));
                }
                if (a._int8Absorption is { } int8)
                {
                    int8.Queries(h, new ReadOnlySpan<float>(_q + _first * qStride + h * qkHead, (int)((n - 1) * qStride) + nope), (int)qStride, n,
                        new Span<float>(_queries + h * width, (n - 1) * heads * width + rank), heads * width);
                    continue;
                }
                for (int t = 0; t < n; t++)
                    Query(t, h, heads, width)[..rank].Clear();
                for (int r = 0; r < nope; r++)
                {
                    a._kvB.CopyRow(h * kvbHead + r, row);
                    for (int t = 0; t < n; t++)
                    {
                        Span<float> latent = Query(t, h, heads, width)[..rank];
                        TensorPrimitives.MultiplyAdd(row, _q[(_first + t) * qStride + h * qkHead + r], latent, latent);
                    }
                }
            }
        }

        // The positions [j0, j0 + BlockPositions) of run i's sequence, transposed once for the unit, against heads
        // [h0, h1) of each of the run's tokens that sees them.
        private void ScoreBlock(int i, int j0, int h0, int h1)
        {
            MlaAttention a = _attention;
            DeepSeekV3Config c = a._config;
            int heads = c.NumAttentionHeads, width = c.KvLoraRank + c.QkRopeHeadDim;
            int t0 = _runs[i], t1 = _runs[i + 1];
            fixed (float* rows = BlockScratch(width))
            {
                float* transposed = rows + AttentionBlocks.BlockPositions * width;
                LoadTransposed(_kv, _layer, _batch.PageTable(_batch.Sequences[_first + t0]), _batch.PageSize, j0, _visible[i], rows, transposed);
                for (int t = t0; t < t1; t++)
                    if (Visible(t) > j0)
                        AttentionBlocks.Scores(_queries + ((long)t * heads + h0) * width, h1 - h0, width, transposed, width, a._softmaxScale, ScoreRow(t, h0, heads) + j0, _stride);
            }
        }

        // Heads [h0, h1) of the tokens [_b0, _b1): each row's softmax over its token's visible positions (weights past
        // them zero), then the latent contexts block by block of each run's positions.
        private void AttendHeads(int h0, int h1)
        {
            DeepSeekV3Config c = _attention._config;
            int heads = c.NumAttentionHeads, rank = c.KvLoraRank, width = rank + c.QkRopeHeadDim, block = AttentionBlocks.BlockPositions;
            for (int t = _b0; t < _b1; t++)
            {
                for (int h = h0; h < h1; h++)
                {
                    var row = new Span<float>(ScoreRow(t, h, heads), _stride);
                    TensorPrimitives.SoftMax(row[..Visible(t)], row[..Visible(t)]);
                    row[Visible(t)..].Clear();
                }
                new Span<float>(_contexts + ((long)t * heads + h0) * rank, (h1 - h0) * rank).Clear();
            }
            fixed (float* scratch = BlockScratch(width))
                for (int i = 0; i < _visible.Count; i++)
                {
                    int t0 = _runs[i], t1 = _runs[i + 1];
                    IReadOnlyList<int> pageTable = _batch.PageTable(_batch.Sequences[_first + t0]);
                    for (int j0 = 0; j0 < _visible[i]; j0 += block)
                    {
                        float* latents = LatentRows(_kv, _layer, pageTable, _batch.PageSize, j0, _visible[i], scratch);
                        for (int t = t0; t < t1; t++)
                            if (Visible(t) > j0)
                                AttentionBlocks.Accumulate(ScoreRow(t, h0, heads) + j0, h1 - h0, _stride, latents, width, rank,
                                    _contexts + ((long)t * heads + h0) * rank, rank);
                    }
                }
        }

        // Outputs: each head's W_uv (in INT8, or row by row, each row widened once for the group) against its latent contexts.
        private void OutputHeads(int h0, int h1)
        {
            MlaAttention a = _attention;
            DeepSeekV3Config c = a._config;
            int heads = c.NumAttentionHeads, nope = c.QkNopeHeadDim, rank = c.KvLoraRank, vHead = c.VHeadDim, kvbHead = nope + vHead, n = _count;
            Span<float> row = rank <= 2048 ? stackalloc float[rank] : new float[rank];
            for (int h = h0; h < h1; h++)
            {
                if (a._int8Absorption is { } int8)
                {
                    int8.Outputs(h, new ReadOnlySpan<float>(_contexts + h * rank, (n - 1) * heads * rank + rank), heads * rank, n,
                        new Span<float>(_attended + ((long)_first * heads + h) * vHead, (n - 1) * heads * vHead + vHead), heads * vHead);
                    continue;
                }
                for (int r = 0; r < vHead; r++)
                {
                    a._kvB.CopyRow(h * kvbHead + nope + r, row);
                    for (int t = 0; t < n; t++)
                        _attended[((long)(_first + t) * heads + h) * vHead + r] = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(_contexts + ((long)t * heads + h) * rank, rank));
                }
            }
        }

        private int Visible(int t) => _batch.Positions[_first + t] + 1;

        // Scores of the group's token t (held from token _b0 on) and head h.
        private float* ScoreRow(int t, int h, int heads) => _scores + ((long)(t - _b0) * heads + h) * _stride;

        private Span<float> Query(int t, int h, int heads, int width) => new(_queries + ((long)t * heads + h) * width, width);
    }
}
