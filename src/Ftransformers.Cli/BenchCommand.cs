using System.CommandLine;
using Ftransformers.Cli.Bench;
using Ftransformers.Hosting;
using Ftransformers.Model;
using Ftransformers.Tokenization;

namespace Ftransformers.Cli;

/// <summary>
/// <c>ftransformers bench</c>: an evalscope-style load generator, in-process or against an OpenAI-compatible URL, with
/// one run per concurrency level; writes report.md, report.json and chart.svg.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "In-process: a checkpoint folder or synthetic:NAME. With --url: the served model name.", Required = true };
        var url = new Option<string?>("--url") { Description = "An OpenAI-compatible server (http://host:port, its /v1 base, or the endpoint); without it the bench runs in-process." };
        var api = new Option<BenchApi>("--api") { Description = "chat (/v1/chat/completions, prefix as the system prompt) or completions (/v1/completions).", DefaultValueFactory = _ => BenchApi.Chat };
        var apiKey = new Option<string?>("--api-key") { Description = "Bearer token for --url." };
        var parallel = new Option<int[]>("--parallel") { Description = "Concurrency levels; one run per level.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [1] };
        var number = new Option<int[]>("--number") { Description = "Requests per level: one value for all levels, or one per level (default: 4 x parallel).", AllowMultipleArgumentsPerToken = true };
        var inputLength = new Option<string>("--input-length") { Description = "Prompt tokens per request, the shared prefix included: N, or MIN:MAX drawn uniformly per request (seeded).", DefaultValueFactory = _ => "128" };
        var outputLength = new Option<string>("--output-length") { Description = "Tokens generated per request (EOS is ignored, so every request generates them all): N, or MIN:MAX drawn per request.", DefaultValueFactory = _ => "32" };
        var dataset = new Option<string?>("--dataset") { Description = "A JSONL file of prompts, one request per line: {\"prompt\": ...} or {\"messages\": [...]}, optional \"max_tokens\"; used in order instead of random prompts." };
        var requestRate = new Option<double?>("--request-rate") { Description = "Open loop: send requests at this mean rate per second (Poisson arrivals, seeded), at most --parallel in flight; default: closed loop." };
        var interference = new Option<int?>("--interference") { Description = "Long-prompt interference: at each level, --parallel streams decode while one prompt of this many tokens arrives; reports their inter-token latency before and during its prefill." };
        var prefixLength = new Option<int>("--prefix-length") { Description = "Leading prompt tokens shared by every request (exercises the prefix cache).", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the random prompts.", DefaultValueFactory = _ => 42 };
        var warmup = new Option<int>("--warmup") { Description = "Requests sent before measuring (not counted).", DefaultValueFactory = _ => 1 };
        var timeout = new Option<int>("--timeout") { Description = "Seconds one request may take (with --url).", DefaultValueFactory = _ => 600 };
        var output = new Option<string?>("--output") { Description = "Folder for report.md, report.json and chart.svg (default: bench-results/DATE-TIME)." };
        var profile = new Option<bool>("--profile") { Description = "In-process: profile every step by part (time, bytes, GB/s, share of the machine's bandwidth and compute peak) into report.md and profile-pN.svg." };
        var sysinfo = new Option<string?>("--sysinfo") { Description = $"With --profile: the machine baseline file (ftransformers sysinfo; measured and written there when missing). Default: {Ftransformers.Diagnostics.MachineBaseline.DefaultCachePath}." };
        var engine = new EngineFlags();
        var command = new Command("bench", "Measure throughput and latency under load (evalscope-style): in-process or against an OpenAI-compatible URL.")
        {
            model, url, api, apiKey, parallel, number, inputLength, outputLength, prefixLength, seed, warmup, timeout, output, profile, sysinfo, dataset, requestRate, interference,
        };
        foreach (Option option in engine.All)
            command.Options.Add(option);

        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            TextWriter stdout = parse.InvocationConfiguration.Output, stderr = parse.InvocationConfiguration.Error;
            int[] levels = parse.GetValue(parallel)!;
            int[] numbers = parse.GetValue(number) is { Length: > 0 } given ? given : [.. levels.Select(p => 4 * p)];
            if (numbers.Length == 1 && levels.Length > 1)
                numbers = [.. levels.Select(_ => numbers[0])];
            var problems = new List<string>();
            if (levels.Length == 0 || levels.Any(p => p < 1))
                problems.Add("--parallel needs one or more levels, each at least 1.");
            if (numbers.Length != levels.Length || numbers.Any(n => n < 1))
                problems.Add("--number needs one value, or one per --parallel level, each at least 1.");
            LengthRange? input = LengthRange.TryParse(parse.GetValue(inputLength)!, out string? inputError), outputTokens = LengthRange.TryParse(parse.GetValue(outputLength)!, out string? outputError);
            int prefix = parse.GetValue(prefixLength);
            if (inputError != null) problems.Add($"--input-length {inputError}");
            if (outputError != null) problems.Add($"--output-length {outputError}");
            if (prefix < 0 || (input is { } i && prefix >= i.Min)) problems.Add("--prefix-length must be at least 0 and less than --input-length (its minimum).");
            if (parse.GetValue(requestRate) is { } rate && !(rate > 0 && double.IsFinite(rate))) problems.Add($"--request-rate must be a positive number of requests per second (got {rate}).");
            if (parse.GetValue(interference) is { } longPrompt)
            {
                if (longPrompt < 1) problems.Add($"--interference must be a prompt length of at least 1 token (got {longPrompt}).");
                foreach (Option option in (Option[])[number, requestRate, dataset])
                    if (parse.GetResult(option) is { Implicit: false })
                        problems.Add($"{option.Name} does not apply to --interference: each level runs --parallel streams and one long prompt.");
            }
            if (parse.GetResult(dataset) is { Implicit: false } && prefix > 0)
                problems.Add("--prefix-length makes random prompts; a --dataset brings its own.");
            if (parse.GetValue(warmup) < 0) problems.Add("--warmup must be at least 0.");
            if (parse.GetValue(timeout) < 1) problems.Add("--timeout must be at least 1.");
            // Flags of the other target are refused, not ignored.
            bool remote = parse.GetValue(url) != null;
            IEnumerable<Option> otherTarget = remote ? engine.All.Where(o => o != engine.Tokenizer) : [apiKey, timeout];
            foreach (Option option in otherTarget.Where(o => parse.GetResult(o) is { Implicit: false }))
                problems.Add(remote ? $"{option.Name} sets up the in-process engine; a server given by --url runs with its own settings."
                    : $"{option.Name} is for a server given by --url.");
            if (parse.GetValue(profile) && parse.GetResult(interference) is { Implicit: false })
                problems.Add("--profile does not apply to --interference, which measures the streams' gaps, not the steps.");
            if (parse.GetResult(dataset) is { Implicit: false } && parse.GetResult(inputLength) is { Implicit: false })
                problems.Add("--input-length sizes random prompts; a --dataset brings its own.");
            if (remote && parse.GetValue(profile))
                problems.Add("--profile profiles the in-process engine; a server started with --enable-profile serves its profile at /debug/profile.");
            if (!parse.GetValue(profile) && parse.GetResult(sysinfo) is { Implicit: false })
                problems.Add("--sysinfo is read by --profile only.");
            foreach (string problem in problems)
                await stderr.WriteLineAsync($"error: {problem}");
            if (problems.Count > 0)
                return Program.ExitBadInput;

            var options = new FtransformersOptions { ModelPath = parse.GetRequiredValue(model) };
            engine.Apply(parse, options);
            string? serverUrl = parse.GetValue(url);
            IBenchTarget target;
            Ftransformers.Diagnostics.MachineBaseline? baseline = null;
            if (serverUrl == null)
            {
                if (!await EngineFlags.CheckAsync(options, stderr))
                    return Program.ExitBadInput;
                if (parse.GetValue(profile))
                    baseline = await Task.Run(() => LoadBaseline(options, parse.GetValue(sysinfo), stderr), ct);
                // A bad dataset is found before the model loads.
                if (parse.GetValue(dataset) is { } file)
                    DatasetPrompts.Load(file, parse.GetValue(api));
                target = new InProcessTarget(options);
            }
            else
            {
                string? tokenizerPath = options.TokenizerPath;
                ITextTokenizer? tokenizer = tokenizerPath == null ? null
                    : tokenizerPath.StartsWith(SyntheticModels.Prefix, StringComparison.Ordinal) ? ByteTokenizer.Instance
                    : DeepSeekTokenizer.Load(tokenizerPath);
                var http = new HttpTarget(serverUrl, options.ModelPath, parse.GetValue(api), parse.GetValue(apiKey), tokenizer, TimeSpan.FromSeconds(parse.GetValue(timeout)));
                target = http;
                try
                {
                    await http.ProbeModelAsync(ct);
                }
                catch
                {
                    await target.DisposeAsync();
                    throw;
                }
            }

            await using (target)
            {
                BenchApi driven = target is HttpTarget h ? h.Api : parse.GetValue(api);
                var workload = new BenchWorkload(driven, input!.Value, outputTokens!.Value, prefix, parse.GetValue(seed), parse.GetValue(warmup), IgnoreEos: true, Temperature: 0)
                {
                    RequestRate = parse.GetValue(requestRate),
                    Dataset = parse.GetValue(dataset),
                    Interference = parse.GetValue(interference),
                };
                DatasetPrompts? lines = workload.Dataset is { } datasetFile ? DatasetPrompts.Load(datasetFile, driven) : null;
                await stderr.WriteLineAsync($"Benchmarking {target.Model} ({target.Description}): levels {string.Join(", ", levels)}, {numbers.Sum()} requests.");
                IReadOnlyList<LevelResult> results;
                try
                {
                    var prompts = new PromptFactory(await target.TokenCounterAsync(ct), workload.Seed);
                    var runner = new BenchRunner(target, workload, prompts, new ProgressBar(stderr, numbers.Sum()), parse.GetValue(profile), baseline, lines);
                    results = workload.Interference is { } longLength
                        ? await RunInterferenceAsync(target, workload, prompts, runner, levels, longLength, stderr, ct)
                        : await runner.RunAsync([.. levels.Zip(numbers)], ct);
                }
                catch (InvalidOperationException e)
                {
                    await stderr.WriteLineAsync($"error: {e.Message}");
                    return Program.ExitMismatch;
                }

                var report = new BenchReport
                {
                    Date = DateTimeOffset.UtcNow,
                    CommandLine = "ftransformers " + string.Join(" ", parse.Tokens.Select(t => Quote(t.Value))),
                    Target = target.Description,
                    Model = target.Model,
                    Preset = target.Preset ?? "unknown (not reported by the server)",
                    Machine = MachineInfo.Current(),
                    Workload = workload,
                    Levels = results,
                    Baseline = baseline,
                };
                string folder = parse.GetValue(output) ?? Path.Combine("bench-results", report.Date.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture));
                IReadOnlyList<string> files = await report.WriteAsync(folder, ct);
                await stdout.WriteAsync(report.ThroughputTable());
                await stdout.WriteLineAsync();
                foreach (string file in files)
                    await stdout.WriteLineAsync($"wrote {file}");
                // Failed requests are a failed benchmark: the numbers would mislead.
                return results.Any(l => l.Failed > 0) ? Program.ExitMismatch : 0;
            }
        }));
        return command;
    }

    private static async Task<IReadOnlyList<LevelResult>> RunInterferenceAsync(IBenchTarget target, BenchWorkload workload, PromptFactory prompts, BenchRunner runner,
        int[] levels, int longPrompt, TextWriter log, CancellationToken ct)
    {
        await runner.WarmUpAsync(ct);
        var interference = new InterferenceRunner(target, workload, prompts);
        var results = new List<LevelResult>();
        int offset = 0;
        foreach (int parallel in levels)
        {
            await log.WriteLineAsync($"Interference, parallel {parallel}: {parallel} stream(s), then a {longPrompt}-token prompt...");
            results.Add(await interference.RunLevelAsync(parallel, longPrompt, offset, ct));
            offset += parallel + 1;
        }
        return results;
    }

    // The baseline profiles are judged against, measured with the engine's own threads and nodes when not cached.
    private static Ftransformers.Diagnostics.MachineBaseline LoadBaseline(FtransformersOptions options, string? path, TextWriter log)
    {
        using var pool = Threading.CpuTopology.ForComputeThreads(options.CpuThreads ?? Environment.ProcessorCount, options.NumaNodes) is { } topology
            ? new Threading.ComputePool(topology) : null;
        path ??= Ftransformers.Diagnostics.MachineBaseline.DefaultCachePath;
        return Ftransformers.Diagnostics.MachineBaseline.LoadOrMeasure(pool, path, measuring: () => log.WriteLine($"Measuring the machine baseline for --profile (cached in {path})..."));
    }

    private static string Quote(string value) =>
        value.Length > 0 && value.All(c => char.IsLetterOrDigit(c) || "-_./:=,@+".Contains(c)) ? value : "'" + value.Replace("'", "'\\''") + "'";
}
