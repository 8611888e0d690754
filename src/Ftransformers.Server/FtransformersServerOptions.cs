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
        if (RetryAfterSeconds < 1)
            errors.Add($"{nameof(RetryAfterSeconds)} must be at least 1 (got {RetryAfterSeconds}).");
        return errors;
    }
}
