using BenchmarkDotNet.Attributes;
using Ftransformers.Tokenization;

namespace Ftransformers.Benchmarks;

/// <summary>
/// Encoding and decoding about 5,000 tokens of mixed text (Latin, CJK, emoji, digits) with the real DeepSeek-V3
/// tokenizer from <c>tests/fixtures</c>, its BPE cache warm as on a serving host.
/// </summary>
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class TokenizerBenchmark
{
    private DeepSeekTokenizer _tokenizer = null!;
    private string _text = null!;
    private int[] _ids = null!;

    [GlobalSetup]
    public void Setup()
    {
        _tokenizer = DeepSeekTokenizer.Load(RepositoryFiles.Tokenizer);
        _text = string.Concat(Enumerable.Repeat("DeepSeek-V3 在 2024 年发布。The quick brown fox 🦊 jumps over 13 lazy dogs!\n", 150));
        _ids = [.. _tokenizer.Encode(_text)];
    }

    [Benchmark]
    public int Encode() => _tokenizer.Encode(_text).Count;

    [Benchmark]
    public int Decode() => _tokenizer.Decode(_ids).Length;
}
