using Ftransformers.Tokenization;

namespace Ftransformers.Tests.Tokenization;

/// <summary>The fixture tokenizer, loaded once for all tests (loading parses a 7.8 MB JSON file).</summary>
internal static class SharedTokenizer
{
    private static readonly Lazy<DeepSeekTokenizer> Loaded = new(() => DeepSeekTokenizer.Load(Fixtures.Tokenizer));

    public static DeepSeekTokenizer Instance => Loaded.Value;
}
