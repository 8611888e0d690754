using Ftransformers.Extensions.AI;
using Ftransformers.Generation;
using Ftransformers.Hosting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Makes an Ftransformers session available as an <see cref="IChatClient"/>.</summary>
public static class FtransformersChatClientExtensions
{
    /// <summary>
    /// Registers <see cref="IChatClient"/> as a singleton over the <see cref="IInferenceSession"/> that
    /// <c>AddFtransformers</c> registers, reporting <see cref="FtransformersOptions.EffectiveModelName"/> as the model id.
    /// </summary>
    public static IServiceCollection AddFtransformersChatClient(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton<IChatClient>(sp => new FtransformersChatClient(
            sp.GetRequiredService<IInferenceSession>(),
            sp.GetService<IOptions<FtransformersOptions>>()?.Value.EffectiveModelName));
        return services;
    }

    /// <summary>An <see cref="IChatClient"/> over <paramref name="session"/>, which stays owned by the caller.</summary>
    public static IChatClient AsIChatClient(this IInferenceSession session, string? modelId = null) => new FtransformersChatClient(session, modelId);
}
