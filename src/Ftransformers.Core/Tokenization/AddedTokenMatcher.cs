namespace Ftransformers.Tokenization;

/// <summary>
/// Finds added tokens (special and control tokens such as <c>&lt;｜User｜&gt;</c>) in text the way
/// Hugging Face tokenizers does before pre-tokenization: scanning left to right, the longest added
/// token that starts at the earliest position wins, and matching resumes after it.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public readonly Dictionary<char, Node> Next = new();
        public int TokenLength = -1; // > 0 when an added token ends here
    }

    private readonly Node _root = new();

    public AddedTokenMatcher(IEnumerable<string> tokens)
    {
        foreach (string token in tokens)
        {
            if (token.Length == 0)
                continue;
            Node node = _root;
            foreach (char c in token)
            {
                if (!node.Next.TryGetValue(c, out Node? child))
                    node.Next[c] = child = new Node();
                node = child;
            }
            node.TokenLength = token.Length;
        }
    }

    /// <summary>
    /// Finds the next added token at or after <paramref name="start"/>.
    /// Returns its index, or -1 when there is none; <paramref name="length"/> is its length.
    /// </summary>
    public int FindNext(ReadOnlySpan<char> text, int start, out int length)
    {
        for (int i = start; i < text.Length; i++)
        {
            if (!_root.Next.TryGetValue(text[i], out Node? node))
                continue;
            int longest = node.TokenLength;
            for (int j = i + 1; j < text.Length && node.Next.TryGetValue(text[j], out node); j++)
            {
                if (node.TokenLength > 0)
                    longest = node.TokenLength;
            }
            if (longest > 0)
            {
                length = longest;
                return i;
            }
        }
        length = 0;
        return -1;
    }
}
