using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Ftransformers.Cli.Bench;
using Ftransformers.Cli.Tune;
using Ftransformers.Hosting;
using Ftransformers.Memory;

namespace Ftransformers.Cli;

/// <summary>
/// <c>ftransformers tune</c>: short measured trials over threads, NUMA nodes, KV cache dtype, chunked prefill size and
/// max running requests against a goal; prints the winner as <c>serve</c> flags and as appsettings.json, with the
/// measurements behind them.
/// </summary>
internal static class TuneCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "--model-path") { Description = "A checkpoint folder or synthetic:NAME.", Required = true };
        var goal = new Option<TuneGoal>("--goal") { Description = "tpot: lowest time per output token with one request; throughput: most output tokens/s with --parallel requests; ttft: most throughput whose TTFT p99 stays within --ttft-bound.", DefaultValueFactory = _ => TuneGoal.Tpot };
        var parallel = new Option<int?>("--parallel") { Description = "Requests at once for the throughput and ttft goals (tpot uses 1)." };
        var ttftBound = new Option<double?>("--ttft-bound") { Description = "Seconds: the ttft goal's bound on TTFT p99." };
        var trials = new Option<int>("--trials") { Description = "Most trials (each loads the model and runs a short bench level).", DefaultValueFactory = _ => 12 };
        var number = new Option<int?>("--number") { Description = "Requests per trial (default: 2 x parallel, at least 2)." };
        var inputLength = new Option<int>("--input-length") { Description = "Prompt tokens per request.", DefaultValueFactory = _ => 128 };
        var outputLength = new Option<int>("--output-length") { Description = "Tokens generated per request.", DefaultValueFactory = _ => 32 };
        var output = new Option<string?>("--output") { Description = "Folder for tune.md and appsettings.json (default: tune-results/DATE-TIME)." };
        var engine = new EngineFlags();
        var command = new Command("tune", "Find the engine settings that meet a goal on this machine by short measured trials; prints them as serve flags and appsettings.json.")
        {
            model, goal, parallel, ttftBound, trials, number, inputLength, outputLength, output,
        };
        Option[] tuned = [engine.CpuInfer, engine.NumaNodes, engine.KvCacheDType, engine.ChunkedPrefillSize, engine.MaxRunningRequests];
        foreach (Option option in engine.All)
            command.Options.Add(option);
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            TextWriter stdout = parse.InvocationConfiguration.Output, stderr = parse.InvocationConfiguration.Error;
            TuneGoal target = parse.GetValue(goal);
            int requestsAtOnce = target == TuneGoal.Tpot ? 1 : parse.GetValue(parallel) ?? 0;
            var problems = new List<string>();
            foreach (Option option in tuned.Where(o => parse.GetResult(o) is { Implicit: false }))
                problems.Add($"{option.Name} is what tune chooses; leave it out.");
            if (target != TuneGoal.Tpot && requestsAtOnce < 1)
                problems.Add($"--goal {target.ToString().ToLowerInvariant()} needs --parallel, at least 1.");
            if (target == TuneGoal.Tpot && parse.GetResult(parallel) is { Implicit: false })
                problems.Add("--parallel is for the throughput and ttft goals; tpot is measured with one request.");
            if (target == TuneGoal.Ttft && parse.GetValue(ttftBound) is not > 0)
                problems.Add("--goal ttft needs --ttft-bound, a positive number of seconds.");
            if (target != TuneGoal.Ttft && parse.GetResult(ttftBound) is { Implicit: false })
                problems.Add("--ttft-bound is for --goal ttft.");
            if (parse.GetValue(trials) < 1) problems.Add("--trials must be at least 1.");
            if (parse.GetValue(number) is < 1) problems.Add("--number must be at least 1.");
            if (parse.GetValue(inputLength) < 1) problems.Add("--input-length must be at least 1.");
            if (parse.GetValue(outputLength) < 2) problems.Add("--output-length must be at least 2 (time per output token needs two).");
            var options = new FtransformersOptions { ModelPath = parse.GetRequiredValue(model) };
            engine.Apply(parse, options);
            foreach (string problem in problems)
                await stderr.WriteLineAsync($"error: {problem}");
            if (problems.Count > 0 || !await EngineFlags.CheckAsync(options, stderr))
                return Program.ExitBadInput;

            int cores = Environment.ProcessorCount, requests = parse.GetValue(number) ?? Math.Max(2, 2 * requestsAtOnce);
            var workload = new BenchWorkload(BenchApi.Chat, new LengthRange(parse.GetValue(inputLength), parse.GetValue(inputLength)),
                new LengthRange(parse.GetValue(outputLength), parse.GetValue(outputLength)), 0, 42, 1, IgnoreEos: true, Temperature: 0);
            var tuner = new Tuner(options, target, requestsAtOnce, parse.GetValue(ttftBound), workload, requests, parse.GetValue(trials), stderr);
            var defaults = new Generation.InferenceSessionOptions();
            var start = new TuneSettings(cores, null, KvCacheDType.F32, defaults.ChunkedPrefillSize, Math.Max(defaults.MaxRunningRequests, requestsAtOnce));
            int machineNodes = Threading.CpuTopology.Detect(cores).Nodes.Count;
            TuneTrial? best = await tuner.RunAsync(start, Tuner.Knobs(cores, machineNodes, requestsAtOnce), ct);

            // The engine flags given, as given (a switch such as --disable-radix-cache has no value).
            string pinned = string.Join(" ", engine.All.Where(o => parse.GetResult(o) is { Implicit: false })
                .Select(o => string.Join(" ", [o.Name, .. parse.GetResult(o)!.Tokens.Select(t => t.Value)])));
            string report = Report(options.ModelPath, target, requestsAtOnce, parse.GetValue(ttftBound), tuner.Trials, best, pinned);
            await stdout.WriteAsync(report);
            if (best == null)
            {
                await stderr.WriteLineAsync("error: no trial met the goal; see the trials above.");
                return Program.ExitMismatch;
            }
            string folder = parse.GetValue(output) ?? Path.Combine("tune-results", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
            Directory.CreateDirectory(folder);
            await File.WriteAllTextAsync(Path.Combine(folder, "tune.md"), report, ct);
            await File.WriteAllTextAsync(Path.Combine(folder, "appsettings.json"), AppSettings(options, best.Settings).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n", ct);
            await stdout.WriteLineAsync($"wrote {Path.Combine(folder, "tune.md")}\nwrote {Path.Combine(folder, "appsettings.json")}");
            return 0;
        }));
        return command;
    }

    private static string Report(string model, TuneGoal goal, int parallel, double? bound, IReadOnlyList<TuneTrial> trials, TuneTrial? best, string pinned)
    {
        var md = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        string aim = goal switch
        {
            TuneGoal.Tpot => "lowest time per output token, one request",
            TuneGoal.Throughput => $"most output tokens/s with {parallel} requests at once",
            _ => $"most output tokens/s with {parallel} requests at once, TTFT p99 within {bound} s",
        };
        md.AppendLine(c, $"# ftransformers tune: {model}").AppendLine().AppendLine(c, $"Goal: {aim}. {trials.Count} trial(s).").AppendLine();
        md.AppendLine("| trial | settings | TPOT mean (ms) | output tok/s | TTFT p99 (ms) | result |");
        md.AppendLine("| ---: | --- | ---: | ---: | ---: | --- |");
        for (int i = 0; i < trials.Count; i++)
        {
            TuneTrial t = trials[i];
            md.AppendLine(c, $"| {i + 1} | `{t.Settings.Flags}` | {Ms(t.TpotSeconds)} | {t.OutputTokensPerSecond:F2} | {Ms(t.TtftP99Seconds)} | {(t == best ? "**best**" : t.Error ?? "")} |");
        }
        if (best != null)
        {
            md.AppendLine().AppendLine("Serve with:").AppendLine().AppendLine("```")
                .AppendLine(c, $"ftransformers serve --model-path {model}{(pinned.Length > 0 ? " " + pinned : "")} {best.Settings.Flags}").AppendLine("```");
        }
        md.AppendLine().AppendLine("Trials run one after another on a shared machine: repeat a close call before trusting it.");
        return md.ToString();

        static string Ms(double? seconds) => seconds is { } s ? (s * 1000).ToString("F2", CultureInfo.InvariantCulture) : "-";
    }

    // The winner as the configuration section AddFtransformers(IConfiguration) binds, beside every option the user gave.
    private static JsonObject AppSettings(FtransformersOptions given, TuneSettings best)
    {
        var options = new FtransformersOptions();
        ServeCommand.Copy(given, options);
        best.ApplyTo(options);
        options.Profile = null;
        var defaults = new FtransformersOptions();
        var section = new JsonObject();
        foreach (var property in typeof(FtransformersOptions).GetProperties().Where(p => p.CanWrite && p.Name != nameof(FtransformersOptions.Profile)))
        {
            object? value = property.GetValue(options);
            if (value != null && !Equals(value, property.GetValue(defaults)))
                section[property.Name] = value switch
                {
                    int number => JsonValue.Create(number),
                    double fraction => JsonValue.Create(fraction),
                    bool flag => JsonValue.Create(flag),
                    _ => JsonValue.Create(value.ToString()),
                };
        }
        return new JsonObject { [FtransformersOptions.SectionName] = section };
    }
}
