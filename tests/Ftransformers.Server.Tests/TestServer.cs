using Ftransformers.Generation;
using Ftransformers.Hosting;
using Ftransformers.Server;
using Ftransformers.Tests.Shared;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Server;

/// <summary>
/// A real Kestrel server on 127.0.0.1 (a free port) over synthetic:tiny, its session wrapped in a
/// <see cref="ScriptedSession"/> so tests can script replies, refusals and endless streams, and instrumented as
/// <c>AddFtransformers</c> would.
/// </summary>
internal sealed class TestServer : IAsyncDisposable
{
    public const string Model = "tiny";

    private TestServer(FtransformersServer server, ScriptedSession session, Uri address)
    {
        Server = server;
        Session = session;
        Address = address;
    }

    public FtransformersServer Server { get; }
    public ScriptedSession Session { get; }
    public Uri Address { get; }

    public static async Task<TestServer> StartAsync(string? apiKey = null, long maxRequestBodyBytes = 64 * 1024)
    {
        var session = new ScriptedSession(InferenceSession.Load("synthetic:tiny"));
        var options = new FtransformersServerOptions { Host = "127.0.0.1", Port = 0, ApiKey = apiKey, MaxRequestBodyBytes = maxRequestBodyBytes };
        FtransformersServer server = FtransformersServer.Create(options, o => { o.ModelPath = "synthetic:tiny"; o.ServedModelName = Model; }, builder =>
        {
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Services.AddSingleton<IInferenceSession>(sp => new InstrumentedInferenceSession(
                session, sp.GetRequiredService<FtransformersMetrics>(), sp.GetRequiredService<ILogger<InstrumentedInferenceSession>>()));
        });
        Uri address = await server.StartAsync();
        return new TestServer(server, session, address);
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}
