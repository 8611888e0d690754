using System.CommandLine;
using Ftransformers.Hosting;
using Ftransformers.Server;
using Microsoft.Extensions.Hosting;

namespace Ftransformers.Cli;

/// <summary><c>ftransformers serve</c>: the OpenAI-compatible HTTP server, until Ctrl+C.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var modelPath = new Option<string>("--model-path", "--model") { Description = "Checkpoint folder, or synthetic:NAME for a built-in random-weight model.", Required = true };
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 exposes the server).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port; 0 picks a free one.", DefaultValueFactory = _ => 30000 };
        var servedModelName = new Option<string?>("--served-model-name") { Description = "Model id clients send and see (default: the folder or synthetic name)." };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on every endpoint but /health." };
        var maxBody = new Option<long>("--max-request-bytes") { Description = "Largest request body accepted.", DefaultValueFactory = _ => new FtransformersServerOptions().MaxRequestBodyBytes };
        var engine = new EngineFlags();
        var command = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).")
        {
            modelPath, host, port, servedModelName, apiKey, maxBody,
        };
        foreach (Option option in engine.All)
            command.Options.Add(option);
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            var options = new FtransformersOptions { ModelPath = parse.GetRequiredValue(modelPath), ServedModelName = parse.GetValue(servedModelName) };
            engine.Apply(parse, options);
            if (!await EngineFlags.CheckAsync(options, error))
                return Program.ExitBadInput;
            var server = new FtransformersServerOptions
            {
                Host = parse.GetRequiredValue(host),
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey),
                MaxRequestBodyBytes = parse.GetValue(maxBody),
            };
            IReadOnlyList<string> problems = server.Validate();
            foreach (string problem in problems)
                await error.WriteLineAsync($"error: {problem}");
            if (problems.Count > 0)
                return Program.ExitBadInput;

            await using FtransformersServer app = FtransformersServer.Create(server, o => Copy(options, o));
            Uri address = await app.StartAsync(ct);
            await output.WriteLineAsync($"Serving {options.EffectiveModelName} on {address} (OpenAI base URL {new Uri(address, "v1")}){(server.ApiKey != null ? ", API key required" : "")}. Ctrl+C stops.");
            await output.FlushAsync(ct);
            try
            {
                await app.App.WaitForShutdownAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
            }
            await app.StopAsync(CancellationToken.None);
            return 0;
        }));
        return command;
    }

    internal static void Copy(FtransformersOptions from, FtransformersOptions to)
    {
        to.ModelPath = from.ModelPath;
        to.TokenizerPath = from.TokenizerPath;
        to.ServedModelName = from.ServedModelName;
        to.Precision = from.Precision;
        to.CpuThreads = from.CpuThreads;
        to.ChunkedPrefillSize = from.ChunkedPrefillSize;
        to.MaxTotalTokens = from.MaxTotalTokens;
        to.MaxRunningRequests = from.MaxRunningRequests;
        to.MaxWaitingRequests = from.MaxWaitingRequests;
        to.EnablePrefixCache = from.EnablePrefixCache;
        to.KvCacheDType = from.KvCacheDType;
        to.KvCachePageSize = from.KvCachePageSize;
        to.PinThreads = from.PinThreads;
        to.NumaNodes = from.NumaNodes;
        to.AttentionBackend = from.AttentionBackend;
        to.ExpertBackend = from.ExpertBackend;
        to.Profile = from.Profile;
    }
}
