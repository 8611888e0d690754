using System.CommandLine;
using Ftransformers.Hosting;
using Ftransformers.Server;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Ftransformers.Tokenization;

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
        var reasoningParser = new Option<string?>("--reasoning-parser") { Description = "deepseek-r1: chat output starts inside <think> (R1-0528-style templates); deepseek-v3: reasoning only when the output opens <think> (the default)." };
        reasoningParser.AcceptOnlyFromAmong([.. FtransformersServerOptions.ReasoningParsers]);
        var toolCallParser = new Option<string?>("--tool-call-parser") { Description = "deepseekv3 or deepseekv31: the tool-call format, which is the chat template's (it selects the template when --chat-template is not given)." };
        toolCallParser.AcceptOnlyFromAmong("deepseekv3", "deepseekv31");
        var tensorParallel = new Option<int>("--tp", "--tp-size") { Description = "Tensor-parallel size; 1 only: one engine runs the model (attention and dense layers on one backend, routed experts on the CPU).", DefaultValueFactory = _ => 1 };
        tensorParallel.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<int>() is var size and not 1)
                result.AddError($"--tp {size}: tensor parallelism across {size} devices is not supported; one engine runs the whole model (use --tp 1).");
        });
        var trustRemoteCode = new Option<bool>("--trust-remote-code") { Description = "Accepted for SGLang command lines; nothing to trust: the engine runs no code from checkpoints." };
        var enableMetrics = new Option<bool>("--enable-metrics") { Description = "Accepted for SGLang command lines; /metrics is always served (behind --api-key when one is set)." };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Least severe log messages written: debug, info, warning, error or critical.", DefaultValueFactory = _ => LogLevel.Information, CustomParser = ParseLogLevel };
        var enableProfile = new Option<bool>("--enable-profile") { Description = "Serve GET /debug/profile (behind --api-key): every step's time, bytes and bandwidth by part (?format=json|markdown|svg, ?reset=true)." };
        var sysinfo = new Option<string?>("--sysinfo") { Description = "With --enable-profile: the machine baseline the profile is judged against (default: ftransformers sysinfo's cache)." };
        var engine = new EngineFlags();
        var command = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).")
        {
            modelPath, host, port, servedModelName, apiKey, maxBody, reasoningParser, toolCallParser, tensorParallel, trustRemoteCode, enableMetrics, logLevel, enableProfile, sysinfo,
        };
        foreach (Option option in engine.All)
            command.Options.Add(option);
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            TextWriter output = parse.InvocationConfiguration.Output, error = parse.InvocationConfiguration.Error;
            var options = new FtransformersOptions { ModelPath = parse.GetRequiredValue(modelPath), ServedModelName = parse.GetValue(servedModelName) };
            engine.Apply(parse, options);
            // Tool calls are written and read in the chat template's own format, so the parser names the template.
            if (parse.GetValue(toolCallParser) is { } parser)
            {
                ChatFormat format = parser == "deepseekv31" ? ChatFormat.DeepSeekV31 : ChatFormat.DeepSeekV3;
                if (options.ChatFormat is { } chosen && chosen != format)
                {
                    await error.WriteLineAsync($"error: --tool-call-parser {parser} does not match --chat-template {parse.GetValue(engine.ChatTemplate)}: tool calls are written in the chat template's format.");
                    return Program.ExitBadInput;
                }
                options.ChatFormat = format;
            }
            if (!await EngineFlags.CheckAsync(options, error))
                return Program.ExitBadInput;
            var server = new FtransformersServerOptions
            {
                Host = parse.GetRequiredValue(host),
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey),
                MaxRequestBodyBytes = parse.GetValue(maxBody),
                ReasoningParser = parse.GetValue(reasoningParser),
                EnableProfiling = parse.GetValue(enableProfile),
                MachineBaselinePath = parse.GetValue(sysinfo),
            };
            IReadOnlyList<string> problems = server.Validate();
            foreach (string problem in problems)
                await error.WriteLineAsync($"error: {problem}");
            if (problems.Count > 0)
                return Program.ExitBadInput;

            // What the session will hold, before anything large is loaded; refused with the numbers when it does not fit.
            Generation.InferenceSessionOptions session = options.ToSessionOptions();
            Serving.MemoryPlan plan = Serving.InferenceSession.PlanMemory(session);
            await output.WriteLineAsync(plan.ToString());
            plan.EnsureFits(session);

            LogLevel minimum = parse.GetValue(logLevel);
            await using FtransformersServer app = FtransformersServer.Create(server, o => Copy(options, o), builder => builder.Logging.SetMinimumLevel(minimum));
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

    // SGLang's names (debug, info, warning, error, critical) and .NET's.
    private static LogLevel ParseLogLevel(System.CommandLine.Parsing.ArgumentResult result)
    {
        string value = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        switch (value.ToLowerInvariant())
        {
            case "debug": return LogLevel.Debug;
            case "info" or "information": return LogLevel.Information;
            case "warning" or "warn": return LogLevel.Warning;
            case "error": return LogLevel.Error;
            case "critical": return LogLevel.Critical;
            default:
                result.AddError($"--log-level '{value}' is unknown; expected debug, info, warning, error or critical.");
                return LogLevel.Information;
        }
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
        to.ContextLength = from.ContextLength;
        to.ChatFormat = from.ChatFormat;
        to.MemoryFractionStatic = from.MemoryFractionStatic;
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
