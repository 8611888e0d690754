namespace Ftransformers.Server;

/// <summary>How the OpenAI-compatible server listens and guards its endpoints.</summary>
public sealed class FtransformersServerOptions
{
    /// <summary>Address to bind: an IP address or host name. Loopback unless told otherwise.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="FtransformersServer.BaseAddress"/>).</summary>
    public int Port { get; set; } = 30000;

    /// <summary>When set, every endpoint but <c>/health</c> requires <c>Authorization: Bearer</c> with this key.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Largest request body accepted; larger ones get a 400 error.</summary>
    public long MaxRequestBodyBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>Seconds sent in <c>Retry-After</c> when the queue is full.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>
    /// Serve <c>GET /debug/profile</c> (behind the API key): every step's time, bytes and achieved bandwidth by part since
    /// the last reset (<c>?reset=true</c>), as JSON, Markdown (<c>?format=markdown</c>) or a flame-style SVG
    /// (<c>?format=svg</c>). Off by default: profiling times every part of every step.
    /// </summary>
    public bool EnableProfiling { get; set; }

    /// <summary>The machine baseline the profile is judged against (<c>ftransformers sysinfo</c>'s cache); null: its default place.</summary>
    public string? MachineBaselinePath { get; set; }

    /// <summary>Reasoning parsers <see cref="ReasoningParser"/> accepts, as SGLang names them.</summary>
    public static readonly IReadOnlyList<string> ReasoningParsers = ["deepseek-r1", "deepseek-v3"];

    /// <summary>
    /// How chat output splits into <c>reasoning_content</c> and content (<c>--reasoning-parser</c>): <c>deepseek-r1</c>
    /// reads the output as starting inside <c>&lt;think&gt;</c> (for templates that open it in the generation prompt, R1-0528
    /// style; a <c>&lt;think&gt;</c> the model writes itself is dropped); <c>deepseek-v3</c> or null: reasoning only when
    /// the output opens <c>&lt;think&gt;</c>.
    /// </summary>
    public string? ReasoningParser { get; set; }

    /// <summary>Every problem with the values, each naming the option; empty when they are valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Host))
            errors.Add($"{nameof(Host)} must name an address to bind.");
        if (Port is < 0 or > 65535)
            errors.Add($"{nameof(Port)} must be between 0 and 65535 (got {Port}).");
        if (ApiKey is { } key && string.IsNullOrWhiteSpace(key))
            errors.Add($"{nameof(ApiKey)} must not be blank.");
        if (MaxRequestBodyBytes < 1024)
            errors.Add($"{nameof(MaxRequestBodyBytes)} must be at least 1024 (got {MaxRequestBodyBytes}).");
        if (ReasoningParser != null && !ReasoningParsers.Contains(ReasoningParser))
            errors.Add($"{nameof(ReasoningParser)} '{ReasoningParser}' is unknown; known: {string.Join(", ", ReasoningParsers)}.");
        if (RetryAfterSeconds < 1)
            errors.Add($"{nameof(RetryAfterSeconds)} must be at least 1 (got {RetryAfterSeconds}).");
        return errors;
    }
}
