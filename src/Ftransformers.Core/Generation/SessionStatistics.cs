namespace Ftransformers.Generation;

/// <summary>A snapshot of a session's load, for metrics and health endpoints.</summary>
/// <param name="RunningRequests">Requests being prefilled or decoded.</param>
/// <param name="WaitingRequests">Requests accepted but not running: queued for admission, or preempted and waiting to be recomputed.</param>
/// <param name="KvCacheTokensUsed">Token slots of the KV cache in use (running sequences and cached prefixes).</param>
/// <param name="KvCacheTokensTotal">Token slots the KV cache holds in all; 0 when the cache grows on demand.</param>
public sealed record SessionStatistics(int RunningRequests, int WaitingRequests, long KvCacheTokensUsed, long KvCacheTokensTotal)
{
    /// <summary>Running requests sent back to the queue because the KV cache ran out (they are recomputed later).</summary>
    public long Preemptions { get; init; }

    /// <summary>Prefix-cache lookups (one per admitted request; 0 when the prefix cache is off).</summary>
    public long PrefixCacheLookups { get; init; }

    /// <summary>Prompt tokens whose KV came from the prefix cache instead of being computed.</summary>
    public long PrefixCacheHitTokens { get; init; }

    /// <summary>Cached tokens dropped to make room (least recently used first).</summary>
    public long PrefixCacheEvictedTokens { get; init; }

    /// <summary>Tokens the prefix cache holds now.</summary>
    public long PrefixCacheTokens { get; init; }
}
