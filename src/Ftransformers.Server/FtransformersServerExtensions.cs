using System.Security.Cryptography;
using System.Text;
using Ftransformers.Diagnostics;
using Ftransformers.Generation;
using Ftransformers.Inference;
using Ftransformers.Hosting;
using Ftransformers.Server;
using Ftransformers.Server.OpenAI;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the OpenAI-compatible endpoints to an ASP.NET Core application that called <c>AddFtransformers</c>.</summary>
public static class FtransformersServerExtensions
{
    /// <summary>Registers the server's options (validated at start-up), the endpoints' handlers and the Prometheus exporter; applies the body size limit to Kestrel.</summary>
    public static IServiceCollection AddFtransformersServer(this IServiceCollection services, Action<FtransformersServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<FtransformersServerOptions>()
            .Configure(configure ?? (_ => { }))
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<FtransformersServerOptions>, ServerOptionsValidator>());
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<FtransformersServerOptions>>((kestrel, server) =>
            kestrel.Limits.MaxRequestBodySize = server.Value.MaxRequestBodyBytes);
        services.TryAddSingleton<CompletionEndpoints>();
        services.TryAddSingleton(sp => new PrometheusExporter(sp.GetRequiredService<FtransformersMetrics>()));
        return services;
    }

    /// <summary>
    /// Maps <c>POST /v1/chat/completions</c>, <c>POST /v1/completions</c>, <c>GET /v1/models</c>, <c>GET /metrics</c>
    /// (all behind the API key when one is set) and <c>GET /health</c>; loads the session now so that a bad model fails
    /// before the server listens.
    /// </summary>
    public static IEndpointRouteBuilder MapFtransformersApi(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        IServiceProvider services = endpoints.ServiceProvider;
        IInferenceSession session = services.GetRequiredService<IInferenceSession>();
        FtransformersOptions engine = services.GetRequiredService<IOptions<FtransformersOptions>>().Value;
        FtransformersServerOptions server = services.GetRequiredService<IOptions<FtransformersServerOptions>>().Value;
        CompletionEndpoints completions = services.GetRequiredService<CompletionEndpoints>();
        PrometheusExporter exporter = services.GetRequiredService<PrometheusExporter>();
        string model = engine.EffectiveModelName;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        endpoints.MapGet("/health", () =>
        {
            SessionStatistics stats = session.GetStatistics();
            return Results.Json(new HealthStatus("ok", model, stats.RunningRequests, stats.WaitingRequests), WireJson.Default.HealthStatus);
        });

        RouteGroupBuilder api = endpoints.MapGroup("");
        if (server.ApiKey is { } key)
            api.AddEndpointFilter(RequireApiKey(key));
        api.MapPost("/v1/chat/completions", completions.ChatAsync);
        api.MapPost("/v1/completions", completions.CompletionsAsync);
        ModelCard card = new(model, "model", created, "ftransformers", session.Config.MaxPositionEmbeddings, engine.Precision ?? "auto");
        api.MapGet("/v1/models", () => Results.Json(new ModelList("list", [card]), WireJson.Default.ModelList));
        api.MapGet("/v1/models/{id}", async (string id, HttpContext context) =>
        {
            if (id != model)
                await CompletionEndpoints.WriteErrorAsync(context, new ApiException(System.Net.HttpStatusCode.NotFound, $"The model '{id}' does not exist.", "model", "model_not_found"));
            else
                await context.Response.WriteAsJsonAsync(card, WireJson.Default.ModelCard);
        });
        api.MapGet("/metrics", () => Results.Text(exporter.Render(), PrometheusExporter.ContentType));
        if (server.EnableProfiling)
            MapProfile(api, engine, server.MachineBaselinePath ?? MachineBaseline.DefaultCachePath);
        return endpoints;
    }

    // GET /debug/profile: the steps since the last reset by part, judged against the cached machine baseline if there is one.
    private static void MapProfile(RouteGroupBuilder api, FtransformersOptions engine, string baselinePath)
    {
        ForwardProfile profile = engine.Profile
            ?? throw new InvalidOperationException("EnableProfiling needs FtransformersOptions.Profile set, so that the session counts its steps.");
        string identity = MachineBaseline.IdentityOf(Ftransformers.Threading.CpuTopology.ForComputeThreads(engine.CpuThreads ?? Environment.ProcessorCount, engine.NumaNodes));
        api.MapGet("/debug/profile", (string? format, bool? reset) =>
        {
            var report = new ProfileReport(profile.Snapshot(reset == true), MachineBaseline.TryLoad(baselinePath, identity));
            return format switch
            {
                null or "json" => Results.Text(ProfileJson(report).ToJsonString(), "application/json"),
                "markdown" or "md" => Results.Text(report.ToMarkdown(), "text/markdown; charset=utf-8"),
                "svg" => Results.Text(report.ToSvg(), "image/svg+xml"),
                _ => Results.Text(new System.Text.Json.Nodes.JsonObject
                {
                    ["error"] = new System.Text.Json.Nodes.JsonObject { ["message"] = $"format '{format}' is unknown; expected json, markdown or svg.", ["type"] = "invalid_request_error", ["param"] = "format" },
                }.ToJsonString(), "application/json", statusCode: 400),
            };
        });
    }

    private static System.Text.Json.Nodes.JsonObject ProfileJson(ProfileReport report)
    {
        var rows = new System.Text.Json.Nodes.JsonArray();
        foreach (ProfileRow r in report.Rows())
            rows.Add(new System.Text.Json.Nodes.JsonObject
            {
                ["kind"] = r.Kind.ToString().ToLowerInvariant(), ["part"] = r.Part.ToString(), ["ms_per_step"] = r.MillisecondsPerStep,
                ["share_of_step"] = r.ShareOfStep, ["mb_per_step"] = r.MegabytesPerStep, ["gb_per_s"] = r.GigabytesPerSecond,
                ["bandwidth_share"] = r.BandwidthShare, ["giga_macs_per_s"] = r.GigaMultiplyAddsPerSecond, ["compute_peak_share"] = r.ComputeShare,
            });
        ForwardProfileSnapshot s = report.Snapshot;
        System.Text.Json.Nodes.JsonObject Steps(StepProfile p) => new() { ["steps"] = p.Steps, ["tokens"] = p.Tokens, ["sequences"] = p.Sequences, ["ms_per_step"] = p.StepTime.TotalMilliseconds };
        return new System.Text.Json.Nodes.JsonObject
        {
            ["decode"] = Steps(s.Decode),
            ["prefill"] = Steps(s.Prefill),
            ["machine"] = report.Machine is { } m ? new System.Text.Json.Nodes.JsonObject { ["read_gb_per_s"] = m.ReadGBps, ["int8_giga_macs_per_s"] = m.IntegerGigaMacs, ["f32_giga_macs_per_s"] = m.FloatGigaMacs, ["measured"] = m.Measured.ToString("O") } : null,
            ["parts"] = rows,
        };
    }

    private static Func<EndpointFilterInvocationContext, EndpointFilterDelegate, ValueTask<object?>> RequireApiKey(string key)
    {
        byte[] expected = Encoding.UTF8.GetBytes(key);
        return async (context, next) =>
        {
            HttpContext http = context.HttpContext;
            string? header = http.Request.Headers.Authorization;
            const string scheme = "Bearer ";
            if (header == null || !header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
                return await Unauthorized(http, "Missing API key: send 'Authorization: Bearer <key>'.");
            byte[] given = Encoding.UTF8.GetBytes(header[scheme.Length..].Trim());
            if (!CryptographicOperations.FixedTimeEquals(given, expected))
                return await Unauthorized(http, "Incorrect API key provided.");
            return await next(context);
        };
    }

    private static async Task<object?> Unauthorized(HttpContext context, string message)
    {
        context.Response.Headers.WWWAuthenticate = "Bearer";
        await CompletionEndpoints.WriteErrorAsync(context, new ApiException(System.Net.HttpStatusCode.Unauthorized, message, null, "invalid_api_key"));
        return Results.Empty;
    }

    private sealed class ServerOptionsValidator : IValidateOptions<FtransformersServerOptions>
    {
        public ValidateOptionsResult Validate(string? name, FtransformersServerOptions options)
        {
            IReadOnlyList<string> errors = options.Validate();
            return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
        }
    }
}
