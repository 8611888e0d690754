using System.Collections.Concurrent;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation.Grammar;

/// <summary>
/// A grammar bound to a vocabulary: works out, for a grammar state, which tokens keep the output inside the grammar
/// (walking the vocabulary's trie once per state) and remembers the answer, since generation revisits the same states
/// (inside a string, between members). Thread-safe: requests with the same grammar share it.
/// </summary>
internal sealed class TokenGrammar
{
    /// <summary>States whose masks are kept (16 KB each for DeepSeek-V3's vocabulary); past this the cache starts afresh.</summary>
    private const int MaxCachedMasks = 1024;

    private readonly TokenTrie _trie;
    private readonly ConcurrentDictionary<GrammarState, TokenMask> _masks = new();

    /// <summary>Binds <paramref name="root"/> to <paramref name="tokenizer"/>'s vocabulary.</summary>
    public TokenGrammar(GrammarNode root, ITextTokenizer tokenizer)
    {
        Root = root;
        Tokenizer = tokenizer;
        _trie = TokenTrie.For(tokenizer);
    }

    /// <summary>The grammar.</summary>
    public GrammarNode Root { get; }

    /// <summary>The vocabulary.</summary>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>The mask of <paramref name="state"/> if it is already known.</summary>
    public TokenMask? Cached(GrammarState state) => _masks.TryGetValue(state, out TokenMask? mask) ? mask : null;

    /// <summary>The tokens allowed in <paramref name="state"/>; the end-of-sentence token when the grammar may end.</summary>
    public TokenMask Mask(GrammarState state)
    {
        if (Cached(state) is { } cached)
            return cached;
        var mask = new TokenMask(Tokenizer.VocabSize);
        var scratch = new List<GrammarStack?>();
        Walk(0, state, mask, scratch);
        foreach (int id in _trie.AddedTokens)
            if (id == Tokenizer.EosTokenId ? state.CanEnd : state.Advance(GrammarNode.SpecialSymbol(id), scratch) != null)
                mask.Allow(id);
        if (mask.Count == 0)
            throw new InvalidOperationException("The output cannot be completed: no token fits the grammar here (a schema nesting deeper than the limit of " +
                $"{GrammarState.MaxDepth} frames, or a vocabulary that cannot spell what must come next).");
        if (_masks.Count >= MaxCachedMasks)
            _masks.Clear();
        _masks[state] = mask;
        return mask;
    }

    /// <summary>The state after <paramref name="token"/>, or null when the grammar does not allow it.</summary>
    public GrammarState? Advance(GrammarState state, int token)
    {
        var scratch = new List<GrammarStack?>();
        return Tokenizer.IsAddedToken(token)
            ? state.Advance(GrammarNode.SpecialSymbol(token), scratch)
            : state.Advance(Tokenizer.TokenBytes(token), scratch);
    }

    private void Walk(int node, GrammarState state, TokenMask mask, List<GrammarStack?> scratch)
    {
        int[] firstChild = _trie.FirstChild, tokensStart = _trie.TokensStart, tokens = _trie.Tokens;
        GrammarFrame? top = state.SingleTop;
        // The string flags were worked out from a character boundary at the root; they hold here only where the path
        // to this node ends between characters too (after "\" they would read the next byte as escaped).
        int charactersLeft = _trie.BetweenCharacters[node] ? top?.StringCharactersLeft ?? -1 : -1;
        for (int child = firstChild[node]; child < firstChild[node + 1]; child++)
        {
            // Free text takes every token; inside a string, a subtree that is string content all through and short
            // enough is taken whole. Both skip walking most of the vocabulary.
            if (top != null && (top.TakesAnyBytes || (charactersLeft >= 0 && _trie.StringSafe[child] && _trie.SubtreeCharacters[child] <= charactersLeft)))
            {
                for (int t = _trie.SubtreeStart[child]; t < _trie.SubtreeEnd[child]; t++)
                    mask.Allow(_trie.SubtreeTokens[t]);
                continue;
            }
            if (state.Advance(_trie.Labels[child], scratch) is not { } next)
                continue;
            for (int t = tokensStart[child]; t < tokensStart[child + 1]; t++)
                mask.Allow(tokens[t]);
            if (firstChild[child] < firstChild[child + 1])
                Walk(child, next, mask, scratch);
        }
    }
}
