namespace Ftransformers.Tokenization;

/// <summary>Which DeepSeek chat template a checkpoint was trained with.</summary>
public enum ChatFormat
{
    /// <summary>DeepSeek-V3 and R1: tool calls as <c>function&lt;｜tool▁sep｜&gt;NAME</c> with JSON in a fence; tool outputs in one block.</summary>
    DeepSeekV3,

    /// <summary>
    /// DeepSeek-V3.1: <c>NAME&lt;｜tool▁sep｜&gt;ARGUMENTS</c> calls chained without separators, one block per tool output,
    /// and a thinking switch in the generation prompt (<c>&lt;/think&gt;</c> when off).
    /// </summary>
    DeepSeekV31,
}
