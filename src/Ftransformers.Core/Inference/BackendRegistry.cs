using System.Collections.Concurrent;
using Ftransformers.Backends.Cpu;
using Ftransformers.Inference;
using Ftransformers.Model;
using Ftransformers.Backends;

namespace Ftransformers.Inference;

/// <summary>
/// Attention and expert backends by name, as <see cref="ModelLoadOptions"/> selects them: <c>cpu</c> is built in;
/// a package with another (a GPU or NPU attention backend) registers it once at start-up.
/// </summary>
public static class BackendRegistry
{
    /// <summary>The built-in backend on both sides.</summary>
    public const string Cpu = "cpu";

    private static readonly ConcurrentDictionary<string, Func<BackendContext, IAttentionBackend>> Attention = new(StringComparer.OrdinalIgnoreCase)
    {
        [Cpu] = context => new CpuAttentionBackend(context),
    };

    private static readonly ConcurrentDictionary<string, Func<BackendContext, IExpertBackend>> Experts = new(StringComparer.OrdinalIgnoreCase)
    {
        [Cpu] = context => new CpuExpertBackend(context),
    };

    /// <summary>Names of the attention backends known now.</summary>
    public static IReadOnlyCollection<string> AttentionBackends => [.. Attention.Keys.Order()];

    /// <summary>Names of the expert backends known now.</summary>
    public static IReadOnlyCollection<string> ExpertBackends => [.. Experts.Keys.Order()];

    /// <summary>Makes an attention backend selectable as <paramref name="name"/> (replacing one of that name).</summary>
    public static void RegisterAttention(string name, Func<BackendContext, IAttentionBackend> factory) => Attention[Check(name)] = factory;

    /// <summary>Makes an expert backend selectable as <paramref name="name"/> (replacing one of that name).</summary>
    public static void RegisterExperts(string name, Func<BackendContext, IExpertBackend> factory) => Experts[Check(name)] = factory;

    internal static IAttentionBackend CreateAttention(string name, BackendContext context) =>
        Attention.TryGetValue(name, out var factory) ? factory(context)
        : throw new ArgumentException($"Unknown attention backend '{name}'; known: {string.Join(", ", AttentionBackends)}.", nameof(name));

    internal static IExpertBackend CreateExperts(string name, BackendContext context) =>
        Experts.TryGetValue(name, out var factory) ? factory(context)
        : throw new ArgumentException($"Unknown expert backend '{name}'; known: {string.Join(", ", ExpertBackends)}.", nameof(name));

    private static string Check(string name) =>
        string.IsNullOrWhiteSpace(name) ? throw new ArgumentException("A backend needs a name.", nameof(name)) : name;
}
