namespace Ftransformers.Generation;

/// <summary>Whether and which tools the model must call.</summary>
public enum ToolChoiceMode
{
    /// <summary>The model decides (the default when tools are given).</summary>
    Auto,
    /// <summary>The model may not call tools.</summary>
    None,
    /// <summary>The model must call one or more tools.</summary>
    Required,
    /// <summary>The model must call <see cref="ToolChoice.FunctionName"/>.</summary>
    Function,
}

/// <summary>OpenAI's <c>tool_choice</c>.</summary>
public sealed record ToolChoice(ToolChoiceMode Mode, string? FunctionName = null)
{
    /// <summary>The model decides.</summary>
    public static ToolChoice Auto { get; } = new(ToolChoiceMode.Auto);

    /// <summary>No tool calls.</summary>
    public static ToolChoice None { get; } = new(ToolChoiceMode.None);

    /// <summary>At least one tool call.</summary>
    public static ToolChoice Required { get; } = new(ToolChoiceMode.Required);

    /// <summary>A call of the named function.</summary>
    public static ToolChoice Function(string name) => new(ToolChoiceMode.Function, name);
}
