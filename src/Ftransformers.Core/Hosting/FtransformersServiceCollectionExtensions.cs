using System.Diagnostics.Metrics;
using Ftransformers.Generation;
using Ftransformers.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Ftransformers.Serving;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers an Ftransformers session with dependency injection.</summary>
public static class FtransformersServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="IInferenceSession"/> as a singleton, loaded on first resolution from
    /// <see cref="FtransformersOptions"/> (validated at host start-up, and again on resolution outside a host), logging
    /// through <see cref="ILogger"/> and publishing <see cref="FtransformersMetrics"/>.
    /// </summary>
    public static IServiceCollection AddFtransformers(this IServiceCollection services, Action<FtransformersOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        AddCore(services).Configure(configure);
        return services;
    }

    /// <summary>As <see cref="AddFtransformers(IServiceCollection, Action{FtransformersOptions})"/>, binding the options from a configuration section (e.g. <c>Ftransformers</c>).</summary>
    public static IServiceCollection AddFtransformers(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        AddCore(services).Bind(configuration);
        return services;
    }

    private static OptionsBuilder<FtransformersOptions> AddCore(IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<FtransformersOptions>, FtransformersOptionsValidator>());
        services.TryAddSingleton(sp => new FtransformersMetrics(sp.GetService<IMeterFactory>()));
        services.TryAddSingleton<IInferenceSession>(LoadSession);
        return services.AddOptions<FtransformersOptions>().ValidateOnStart();
    }

    private static IInferenceSession LoadSession(IServiceProvider services)
    {
        FtransformersOptions options = services.GetRequiredService<IOptions<FtransformersOptions>>().Value;
        ILoggerFactory loggers = services.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance;
        ILogger logger = loggers.CreateLogger("Ftransformers.Hosting");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        InferenceSession session = InferenceSession.Load(options.ToSessionOptions());
        logger.LogInformation("Loaded {Model} ({Layers} layers, vocabulary {Vocab}, context {Context}) in {ElapsedMs:F0} ms",
            options.ModelPath, session.Config.NumHiddenLayers, session.Config.VocabSize, session.Config.MaxPositionEmbeddings, clock.Elapsed.TotalMilliseconds);
        return new InstrumentedInferenceSession(session, services.GetRequiredService<FtransformersMetrics>(), loggers.CreateLogger<InstrumentedInferenceSession>());
    }
}

/// <summary>Validates <see cref="FtransformersOptions"/> through <see cref="FtransformersOptions.Validate"/>.</summary>
internal sealed class FtransformersOptionsValidator : IValidateOptions<FtransformersOptions>
{
    public ValidateOptionsResult Validate(string? name, FtransformersOptions options)
    {
        IReadOnlyList<string> errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
