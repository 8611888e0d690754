using System.Net;
using Ftransformers.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Ftransformers.Server;

/// <summary>
/// A ready-made OpenAI-compatible server: Kestrel on <see cref="FtransformersServerOptions.Host"/> and
/// <see cref="FtransformersServerOptions.Port"/>, the session from <c>AddFtransformers</c>, and the endpoints of
/// <c>MapFtransformersApi</c>. What <c>ftransformers serve</c> runs; applications with their own ASP.NET Core host call
/// the extension methods instead.
/// </summary>
public sealed class FtransformersServer : IAsyncDisposable
{
    private FtransformersServer(WebApplication app) => App = app;

    /// <summary>The application, for access to its services and lifetime.</summary>
    public WebApplication App { get; }

    /// <summary>
    /// Builds the server, validating both option sets and loading the model (so a bad path or value fails here).
    /// <paramref name="configure"/> runs last on the builder: tests replace services there, hosts adjust logging.
    /// </summary>
    /// <exception cref="OptionsValidationException">An option is out of range; the message names it.</exception>
    public static FtransformersServer Create(FtransformersServerOptions server, Action<FtransformersOptions> engine, Action<WebApplicationBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(engine);
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        string host = IPAddress.TryParse(server.Host, out IPAddress? ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{server.Host}]" : server.Host;
        builder.WebHost.UseUrls($"http://{host}:{server.Port}");
        builder.Services.AddFtransformers(o =>
        {
            engine(o);
            if (server.EnableProfiling)
                o.Profile ??= new Ftransformers.Inference.ForwardProfile();
        });
        builder.Services.AddFtransformersServer(o =>
        {
            o.Host = server.Host;
            o.Port = server.Port;
            o.ApiKey = server.ApiKey;
            o.MaxRequestBodyBytes = server.MaxRequestBodyBytes;
            o.RetryAfterSeconds = server.RetryAfterSeconds;
            o.ReasoningParser = server.ReasoningParser;
            o.EnableProfiling = server.EnableProfiling;
            o.MachineBaselinePath = server.MachineBaselinePath;
        });
        configure?.Invoke(builder);
        WebApplication app = builder.Build();
        try
        {
            _ = app.Services.GetRequiredService<IOptions<FtransformersServerOptions>>().Value;
            app.MapFtransformersApi();
        }
        catch
        {
            ((IDisposable)app).Dispose();
            throw;
        }
        return new FtransformersServer(app);
    }

    /// <summary>Starts listening; returns the address clients use (the real port when 0 was asked for).</summary>
    public async Task<Uri> StartAsync(CancellationToken cancellationToken = default)
    {
        await App.StartAsync(cancellationToken);
        return BaseAddress;
    }

    /// <summary>The address the server listens on, once started.</summary>
    public Uri BaseAddress
    {
        get
        {
            ICollection<string>? addresses = App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
            string first = addresses?.FirstOrDefault() ?? throw new InvalidOperationException("The server is not listening yet: call StartAsync first.");
            return new Uri(first.EndsWith('/') ? first : first + "/");
        }
    }

    /// <summary>Stops accepting requests, letting running ones end within the host's shutdown timeout.</summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => App.StopAsync(cancellationToken);

    /// <summary>Stops the server and releases the session.</summary>
    public ValueTask DisposeAsync() => App.DisposeAsync();
}
