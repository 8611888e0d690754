namespace Ftransformers.Model;

/// <summary>
/// The tokens of one forward pass, from one or many sequences: each token knows its sequence and position, each
/// sequence its page table. Position p of a sequence lives in KV slot <c>PageTable[p / PageSize] * PageSize +
/// p % PageSize</c>; a token attends causally to positions 0..p of its own sequence, so a sequence's tokens in the
/// batch must be consecutive positions following the ones already cached. Reused between steps to stay
/// allocation-free.
/// </summary>
public sealed class ForwardBatch
{
    private int[] _tokens = new int[16], _positions = new int[16], _sequences = new int[16], _logitRows = new int[16];
    private readonly List<IReadOnlyList<int>> _pageTables = [];

    /// <summary>Positions per KV page.</summary>
    public int PageSize { get; private set; } = 1;

    /// <summary>Tokens in the batch.</summary>
    public int TokenCount { get; private set; }

    /// <summary>Tokens whose logits are wanted.</summary>
    public int LogitCount { get; private set; }

    /// <summary>Sequences in the batch.</summary>
    public int SequenceCount => _pageTables.Count;

    /// <summary>Token ids.</summary>
    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, TokenCount);

    /// <summary>Each token's position in its sequence.</summary>
    public ReadOnlySpan<int> Positions => _positions.AsSpan(0, TokenCount);

    /// <summary>Each token's sequence (index into the batch's sequences).</summary>
    public ReadOnlySpan<int> Sequences => _sequences.AsSpan(0, TokenCount);

    /// <summary>Indexes of the tokens whose logits are computed, in output order.</summary>
    public ReadOnlySpan<int> LogitRows => _logitRows.AsSpan(0, LogitCount);

    /// <summary>The page table of a sequence in the batch.</summary>
    public IReadOnlyList<int> PageTable(int sequence) => _pageTables[sequence];

    /// <summary>Empties the batch for a new step.</summary>
    internal void Clear(int pageSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pageSize, 1);
        PageSize = pageSize;
        TokenCount = 0;
        LogitCount = 0;
        _pageTables.Clear();
    }

    /// <summary>
    /// Adds a sequence's tokens at positions <paramref name="start"/>.. and returns its index; with
    /// <paramref name="logits"/> the last token's logits (or every token's, <paramref name="allLogits"/>) are wanted.
    /// </summary>
    internal int AddSequence(ReadOnlySpan<int> tokens, int start, IReadOnlyList<int> pageTable, bool logits, bool allLogits = false)
    {
        int sequence = _pageTables.Count;
        _pageTables.Add(pageTable);
        int needed = TokenCount + tokens.Length;
        if (needed > _tokens.Length)
        {
            int size = Math.Max(needed, 2 * _tokens.Length);
            Array.Resize(ref _tokens, size);
            Array.Resize(ref _positions, size);
            Array.Resize(ref _sequences, size);
        }
        for (int i = 0; i < tokens.Length; i++)
        {
            _tokens[TokenCount] = tokens[i];
            _positions[TokenCount] = start + i;
            _sequences[TokenCount] = sequence;
            if (allLogits || (logits && i == tokens.Length - 1))
            {
                if (LogitCount == _logitRows.Length)
                    Array.Resize(ref _logitRows, 2 * _logitRows.Length);
                _logitRows[LogitCount++] = TokenCount;
            }
            TokenCount++;
        }
        return sequence;
    }

    /// <summary>The KV slot of <paramref name="position"/> in a sequence.</summary>
    public long Slot(int sequence, int position)
    {
        IReadOnlyList<int> table = _pageTables[sequence];
        int page = position / PageSize;
        if (page >= table.Count)
            throw new InvalidOperationException($"Position {position} has no KV page (the sequence's table holds {table.Count} pages of {PageSize}).");
        return (long)table[page] * PageSize + position % PageSize;
    }
}
