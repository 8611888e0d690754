using System.Text;

namespace Ftransformers.Cli.Bench;

/// <summary>
/// Makes prompts of a given token length from seeded random English words, sized with the target's token counter:
/// one shared prefix for the whole run (to exercise the prefix cache) and a different remainder per request.
/// </summary>
internal sealed class PromptFactory(Func<string, int> countTokens, int seed)
{
    private static readonly string[] Words =
    [
        "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state", "family",
        "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company", "system", "program",
        "question", "work", "government", "number", "night", "point", "home", "water", "room", "mother", "area", "money",
        "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side", "kind",
        "head", "house", "service", "friend", "father", "power", "hour", "game", "line", "end", "member", "law", "car", "city",
        "community", "name", "president", "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face",
        "others", "level", "office", "door", "health", "person", "art", "war", "history", "party", "result", "change",
        "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force", "education", "river", "mountain",
    ];

    private string? _prefix;

    /// <summary>The run's shared prefix of <paramref name="tokens"/> tokens (made once).</summary>
    public string SharedPrefix(int tokens) => _prefix ??= Text(tokens, new Random(seed));

    /// <summary>The prompt of request <paramref name="index"/> (distinct per index): prefix plus its own text, <paramref name="totalTokens"/> in all.</summary>
    public BenchPrompt Prompt(int index, int totalTokens, int prefixTokens)
    {
        string prefix = prefixTokens > 0 ? SharedPrefix(prefixTokens) : "";
        // The index goes first so that no two requests share more than the prefix.
        string text = Text(Math.Max(totalTokens - prefixTokens, 1), LengthRange.RandomOf(seed, index, 0), $"{index}: ");
        return new BenchPrompt(prefix, text);
    }

    /// <summary>Random words trimmed to about <paramref name="tokens"/> tokens as the counter sees them.</summary>
    public string Text(int tokens, Random random, string start = "")
    {
        var text = new StringBuilder(start);
        while (countTokens(text.ToString()) < tokens)
        {
            // Add words in batches sized by the shortfall, then trim back character by character.
            int missing = tokens - countTokens(text.ToString());
            for (int i = 0; i < Math.Max(1, missing / 4); i++)
                text.Append(Words[random.Next(Words.Length)]).Append(' ');
        }
        while (text.Length > 1 && countTokens(text.ToString()) > tokens)
            text.Length--;
        return text.ToString();
    }
}
