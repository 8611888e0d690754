namespace Ftransformers.Generation;

/// <summary>A snapshot of a session's load, for metrics and health endpoints.</summary>
/// <param name="RunningRequests">Requests being prefilled or decoded.</param>
/// <param name="WaitingRequests">Requests admitted but not yet running.</param>
/// <param name="KvCacheTokensUsed">Token slots of the KV cache in use (running sequences and cached prefixes).</param>
/// <param name="KvCacheTokensTotal">Token slots the KV cache holds in all; 0 when the cache grows on demand.</param>
public sealed record SessionStatistics(int RunningRequests, int WaitingRequests, long KvCacheTokensUsed, long KvCacheTokensTotal);
