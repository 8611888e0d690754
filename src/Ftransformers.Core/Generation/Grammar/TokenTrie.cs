using System.Runtime.CompilerServices;
using Ftransformers.Tokenization;

namespace Ftransformers.Generation.Grammar;

/// <summary>
/// The vocabulary's byte strings as a trie, so that a grammar walks each shared prefix once when it works out which
/// tokens it allows. Added tokens (markers) are kept apart: they are one symbol each. Built once per tokenizer.
/// </summary>
internal sealed class TokenTrie
{
    private static readonly ConditionalWeakTable<ITextTokenizer, TokenTrie> Cache = [];

    private TokenTrie(ITextTokenizer tokenizer)
    {
        var children = new List<Dictionary<byte, int>?> { null };
        var endings = new List<List<int>?> { null };
        var added = new List<int>();
        for (int id = 0; id < tokenizer.VocabSize; id++)
        {
            if (tokenizer.IsAddedToken(id))
            {
                added.Add(id);
                continue;
            }
            int node = 0;
            foreach (byte b in tokenizer.TokenBytes(id))
            {
                Dictionary<byte, int> map = children[node] ??= [];
                if (!map.TryGetValue(b, out int child))
                {
                    map[b] = child = children.Count;
                    children.Add(null);
                    endings.Add(null);
                }
                node = child;
            }
            if (node != 0)
                (endings[node] ??= []).Add(id);
        }
        AddedTokens = [.. added];

        // Flatten: children of a node are contiguous, sorted by byte; the tokens ending at a node too.
        int count = children.Count;
        FirstChild = new int[count + 1];
        Labels = new byte[count];
        TokensStart = new int[count + 1];
        var order = new int[count];          // flattened index -> builder index
        var childList = new List<int>(count);
        var tokens = new List<int>();
        int next = 1;
        order[0] = 0;
        for (int i = 0; i < count; i++)
        {
            int builder = order[i];
            FirstChild[i] = next;
            TokensStart[i] = tokens.Count;
            if (endings[builder] is { } ending)
                tokens.AddRange(ending);
            if (children[builder] is { } map)
                foreach ((byte label, int child) in map.OrderBy(p => p.Key))
                {
                    Labels[next] = label;
                    order[next++] = child;
                }
        }
        FirstChild[count] = next;
        TokensStart[count] = tokens.Count;
        Tokens = [.. tokens];

        SubtreeStart = new int[count];
        SubtreeEnd = new int[count];
        StringSafe = new bool[count];
        BetweenCharacters = new bool[count];
        SubtreeCharacters = new int[count];
        var subtreeTokens = new List<int>(Tokens.Length);
        var scratch = new List<GrammarStack?>();
        GrammarState body = GrammarState.Initial(StringNode.Any).Advance('"', scratch)!;
        Summarize(0, body, subtreeTokens, scratch);
        SubtreeTokens = [.. subtreeTokens];
    }

    // Lists each subtree's tokens contiguously, and marks the subtrees that are string content all through.
    private void Summarize(int node, GrammarState? inString, List<int> subtreeTokens, List<GrammarStack?> scratch)
    {
        SubtreeStart[node] = subtreeTokens.Count;
        for (int t = TokensStart[node]; t < TokensStart[node + 1]; t++)
            subtreeTokens.Add(Tokens[t]);
        bool safe = inString != null;
        BetweenCharacters[node] = inString?.SingleTop?.StringCharactersLeft >= 0;
        int characters = 0;
        for (int child = FirstChild[node]; child < FirstChild[node + 1]; child++)
        {
            // Still inside the string after this byte (a closing quote leaves it; an invalid byte kills it).
            GrammarState? next = inString?.Advance(Labels[child], scratch);
            if (next?.SingleTop == null)
                next = null;
            Summarize(child, next, subtreeTokens, scratch);
            safe &= StringSafe[child];
            characters = Math.Max(characters, SubtreeCharacters[child]);
        }
        SubtreeEnd[node] = subtreeTokens.Count;
        StringSafe[node] = safe;
        // Counting every byte that is not a UTF-8 continuation overcounts escapes, which only makes the shortcut rarer.
        SubtreeCharacters[node] = characters + (node != 0 && (Labels[node] & 0xC0) != 0x80 ? 1 : 0);
    }

    /// <summary>The trie of <paramref name="tokenizer"/>, built on first use.</summary>
    public static TokenTrie For(ITextTokenizer tokenizer) => Cache.GetValue(tokenizer, t => new TokenTrie(t));

    /// <summary>Node i's children are nodes FirstChild[i] .. FirstChild[i + 1] - 1 (node 0 is the root).</summary>
    public int[] FirstChild { get; }

    /// <summary>The byte on the edge into each node.</summary>
    public byte[] Labels { get; }

    /// <summary>Tokens whose bytes end at node i: Tokens[TokensStart[i] .. TokensStart[i + 1] - 1].</summary>
    public int[] TokensStart { get; }

    /// <inheritdoc cref="TokensStart"/>
    public int[] Tokens { get; }

    /// <summary>Every token in node i's subtree (its own and its descendants'): SubtreeTokens[SubtreeStart[i] .. SubtreeEnd[i] - 1].</summary>
    public int[] SubtreeStart { get; }

    /// <inheritdoc cref="SubtreeStart"/>
    public int[] SubtreeEnd { get; }

    /// <inheritdoc cref="SubtreeStart"/>
    public int[] SubtreeTokens { get; }

    /// <summary>Whether every byte path through node i's subtree (its edge included) is string content from a character boundary.</summary>
    public bool[] StringSafe { get; }

    /// <summary>
    /// Whether the path to node i, read inside a string from a character boundary, ends between characters again
    /// (not inside an escape or a multi-byte character): only then do the flags of its children describe what
    /// follows any state that is between characters.
    /// </summary>
    public bool[] BetweenCharacters { get; }

    /// <summary>The most characters a path through node i's subtree adds (an upper bound).</summary>
    public int[] SubtreeCharacters { get; }

    /// <summary>Added tokens, matched as one symbol each.</summary>
    public int[] AddedTokens { get; }
}
