using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ftransformers.Cli.Bench;

/// <summary>Where the numbers came from, so that a run can be understood and repeated.</summary>
internal sealed record MachineInfo(string Cpu, int LogicalCores, double MemoryGiB, string OperatingSystem, string Runtime, string FtransformersVersion)
{
    public static MachineInfo Current()
    {
        string version = typeof(MachineInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
        return new MachineInfo(Ftransformers.Diagnostics.MachineBaseline.CpuModel(), Environment.ProcessorCount, Math.Round(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024), 1),
            RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription, version);
    }

    public override string ToString() => $"{Cpu}, {LogicalCores} logical cores, {MemoryGiB:F1} GiB; {OperatingSystem}; {Runtime}; Ftransformers {FtransformersVersion}";
}

/// <summary>A finished run: its settings, its machine and the result of each level; written as Markdown, JSON and SVG.</summary>
internal sealed record BenchReport
{
    public string Schema { get; init; } = "ftransformers-bench/1";
    public required DateTimeOffset Date { get; init; }
    public required string CommandLine { get; init; }
    public required string Target { get; init; }
    public required string Model { get; init; }
    public required string Preset { get; init; }
    public required MachineInfo Machine { get; init; }
    public required BenchWorkload Workload { get; init; }
    public required IReadOnlyList<LevelResult> Levels { get; init; }
    /// <summary>The machine baseline profiles were judged against (<c>--profile</c>).</summary>
    public Ftransformers.Diagnostics.MachineBaseline? Baseline { get; init; }

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>Writes report.md, report.json and chart.svg into <paramref name="directory"/>; returns their paths.</summary>
    public async Task<IReadOnlyList<string>> WriteAsync(string directory, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(directory);
        string markdown = Path.Combine(directory, "report.md"), json = Path.Combine(directory, "report.json"), svg = Path.Combine(directory, "chart.svg");
        await File.WriteAllTextAsync(markdown, ToMarkdown(), cancellationToken);
        await File.WriteAllTextAsync(json, JsonSerializer.Serialize(this, Json), cancellationToken);
        await File.WriteAllTextAsync(svg, ToSvg(), cancellationToken);
        var files = new List<string> { markdown, json, svg };
        foreach (LevelResult level in Levels.Where(l => l.Snapshot != null))
        {
            string flame = Path.Combine(directory, $"profile-p{level.Parallel}.svg");
            await File.WriteAllTextAsync(flame, new Ftransformers.Diagnostics.ProfileReport(level.Snapshot!, Baseline).ToSvg(), cancellationToken);
            files.Add(flame);
        }
        return files;
    }

    public static BenchReport Read(string json) => JsonSerializer.Deserialize<BenchReport>(json, Json) ?? throw new InvalidDataException("Empty report.");

    private static string Ms(double? seconds) => seconds is { } s ? (s * 1000).ToString("F1", CultureInfo.InvariantCulture) : "-";
    private static string Ms3(double seconds) => (seconds * 1000).ToString("F3", CultureInfo.InvariantCulture);
    private static string F(double value, string format = "F2") => value.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>The throughput table (also printed to the console).</summary>
    public string ThroughputTable()
    {
        var md = new StringBuilder();
        md.AppendLine("| parallel | requests | failed | req/s | output tok/s | total tok/s | avg input tok | avg output tok | cache hit rate |");
        md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (LevelResult l in Levels)
            md.AppendLine($"| {l.Parallel} | {l.Number} | {l.Failed} | {F(l.RequestThroughput)} | {F(l.OutputTokensPerSecond, "F1")} | {F(l.TotalTokensPerSecond, "F1")} | " +
                $"{F(l.AverageInputTokens, "F1")} | {F(l.AverageOutputTokens, "F1")} | {F(l.CacheHitRate * 100, "F1")}% |");
        return md.ToString();
    }

    public string ToMarkdown()
    {
        var md = new StringBuilder();
        md.AppendLine("# Ftransformers benchmark").AppendLine();
        md.AppendLine("| | |").AppendLine("| --- | --- |");
        md.AppendLine($"| date | {Date:yyyy-MM-dd HH:mm:ss} UTC |");
        md.AppendLine($"| command | `{CommandLine}` |");
        md.AppendLine($"| target | {Target} |");
        md.AppendLine($"| model | {Model} |");
        md.AppendLine($"| preset | {Preset} |");
        md.AppendLine($"| machine | {Machine} |");
        string input = Workload.Dataset is { } dataset ? $"prompts from {dataset}" : $"input {Workload.Input} tokens ({Workload.PrefixLength} of them a prefix shared by all requests)";
        string arrivals = Workload.RequestRate is { } rate ? $"open loop at {F(rate, "G")} requests/s (Poisson), at most parallel in flight" : "closed loop";
        md.AppendLine($"| workload | {Workload.Api} API; {input}; output {Workload.Output} tokens{(Workload.IgnoreEos ? " (EOS ignored)" : "")}; {arrivals}; " +
            $"temperature {F(Workload.Temperature, "G")}; seed {Workload.Seed}; {Workload.Warmup} warm-up request(s) |");
        md.AppendLine().AppendLine("## Throughput").AppendLine();
        md.Append(ThroughputTable());
        md.AppendLine().AppendLine("## Latency (ms)").AppendLine();
        md.AppendLine("| parallel | measure | mean | p50 | p90 | p99 |");
        md.AppendLine("| ---: | --- | ---: | ---: | ---: | ---: |");
        foreach (LevelResult l in Levels)
        {
            foreach ((string name, Distribution? d) in (ReadOnlySpan<(string, Distribution?)>)[("TTFT", l.TimeToFirstToken), ("TPOT", l.TimePerOutputToken), ("ITL", l.InterTokenLatency), ("latency", l.Latency)])
                md.AppendLine($"| {l.Parallel} | {name} | {Ms(d?.Mean)} | {Ms(d?.P50)} | {Ms(d?.P90)} | {Ms(d?.P99)} |");
        }
        AppendProjection(md);
        AppendInterference(md);
        foreach (LevelResult level in Levels.Where(l => l.Snapshot != null))
        {
            md.AppendLine().AppendLine($"## Profile, parallel {level.Parallel} (profile-p{level.Parallel}.svg)").AppendLine();
            md.Append(new Ftransformers.Diagnostics.ProfileReport(level.Snapshot!, Baseline).ToMarkdown());
        }
        IEnumerable<string> errors = Levels.SelectMany(l => l.Errors.Select(e => $"- parallel {l.Parallel}: {e}"));
        if (errors.Any())
            md.AppendLine().AppendLine("## Errors").AppendLine().AppendLine(string.Join("\n", errors));
        md.AppendLine().AppendLine("TTFT: time to first token. TPOT: time per output token after the first, per request. ITL: gap between consecutive tokens. " +
            "Cache hit rate: prompt tokens served from the prefix cache over all prompt tokens. The chart (chart.svg) plots output throughput and TTFT against concurrency.");
        return md.ToString();
    }

    private void AppendInterference(StringBuilder md)
    {
        if (!Levels.Any(l => l.Interference != null))
            return;
        md.AppendLine().AppendLine("## Long-prompt interference").AppendLine();
        md.AppendLine($"Streams decode; once each has given {InterferenceRunner.WarmTokens} tokens, their gaps are recorded for {InterferenceRunner.BaselineTokens} more (before); " +
            "then one long prompt arrives and their gaps are recorded until its first token, and each stream's next token (during). Gaps are counted per token.").AppendLine();
        md.AppendLine("| streams | long prompt tokens | its TTFT (ms) | ITL before p50 | before p99 | during p50 | during p99 | p99 during / before |");
        md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (LevelResult l in Levels)
            if (l.Interference is { } i)
                md.AppendLine($"| {i.Streams} | {i.LongPromptTokens} | {Ms(i.LongPromptTtft)} | {Ms(i.Before?.P50)} | {Ms(i.Before?.P99)} | {Ms(i.During?.P50)} | {Ms(i.During?.P99)} | {(i.P99Ratio is { } r ? F(r) + "x" : "-")} |");
    }

    // Per-layer decode times of a shallow synthetic model, and the 61-layer step they imply.
    private void AppendProjection(StringBuilder md)
    {
        if (!Levels.Any(l => l.Decode is { IsShallow: true, ProjectedStepSeconds: not null }))
            return;
        DecodeProfile first = Levels.Select(l => l.Decode).First(d => d != null)!;
        md.AppendLine().AppendLine("## Projected decode at DeepSeek-V3 depth (61 layers)").AppendLine();
        md.AppendLine($"**A projection, not a measurement.** This model has {first.DenseLayers + first.MoeLayers} layers ({first.DenseLayers} dense, {first.MoeLayers} MoE). " +
            "Each part is timed over the level's decode steps (steps in which every running request decodes one token; prefill and mixed steps are left out) " +
            "and the step is projected to DeepSeek-V3's 3 dense + 58 MoE layers: head + 3 x (attention + dense MLP) + 58 x (attention + MoE), " +
            "head being the embedding lookup, final norm and lm_head. Projected tok/s is the mean batch over the projected step.").AppendLine();
        md.AppendLine("| parallel | decode steps | mean batch | measured step (ms) | head (ms) | attention (ms/layer) | dense MLP (ms/layer) | MoE (ms/layer) | projected step, 61 layers (ms) | projected decode tok/s |");
        md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (LevelResult l in Levels)
        {
            if (l.Decode is not { ProjectedStepSeconds: { } projected } d)
                continue;
            md.AppendLine($"| {l.Parallel} | {d.Steps} | {F(d.MeanBatch)} | {Ms3(d.StepSeconds)} | {Ms3(d.HeadSeconds)} | {Ms3(d.AttentionSecondsPerLayer)} | " +
                $"{Ms3(d.DenseMlpSecondsPerLayer)} | {Ms3(d.MoeSecondsPerLayer)} | {Ms3(projected)} | {F(d.MeanBatch / projected)} |");
        }
    }

    /// <summary>Two panels, output tokens/s and TTFT (mean and p99, ms), against the concurrency levels.</summary>
    public string ToSvg()
    {
        const int panelWidth = 420, height = 320, top = 50, bottom = 50, left = 60, right = 30;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{2 * panelWidth}\" height=\"{height}\" viewBox=\"0 0 {2 * panelWidth} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{panelWidth}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{Escape($"{Model} ({Target}), input {Workload.Input} / output {Workload.Output} tokens")}</text>\n");

        string[] levels = [.. Levels.Select(l => l.Parallel.ToString(CultureInfo.InvariantCulture))];
        Panel(svg, 0, "Output throughput (tokens/s)", levels, [("output tok/s", "#1f77b4", [.. Levels.Select(l => l.OutputTokensPerSecond)])]);
        Panel(svg, panelWidth, "Time to first token (ms)", levels,
        [
            ("mean", "#d62728", [.. Levels.Select(l => (l.TimeToFirstToken?.Mean ?? 0) * 1000)]),
            ("p99", "#ff7f0e", [.. Levels.Select(l => (l.TimeToFirstToken?.P99 ?? 0) * 1000)]),
        ]);
        svg.Append("</svg>\n");
        return svg.ToString();

        void Panel(StringBuilder s, int x0, string title, string[] xs, (string Name, string Color, double[] Values)[] series)
        {
            int plotWidth = panelWidth - left - right, plotHeight = height - top - bottom;
            double max = NiceCeiling(series.SelectMany(v => v.Values).DefaultIfEmpty(0).Max());
            double X(int i) => x0 + left + (xs.Length == 1 ? plotWidth / 2.0 : i * plotWidth / (double)(xs.Length - 1));
            double Y(double v) => top + plotHeight - v / max * plotHeight;
            s.Append(CultureInfo.InvariantCulture, $"<g class=\"panel\"><text x=\"{x0 + panelWidth / 2}\" y=\"38\" text-anchor=\"middle\" font-weight=\"bold\">{Escape(title)}</text>\n");
            s.Append(CultureInfo.InvariantCulture, $"<line x1=\"{x0 + left}\" y1=\"{top + plotHeight}\" x2=\"{x0 + left + plotWidth}\" y2=\"{top + plotHeight}\" stroke=\"black\"/>\n");
            s.Append(CultureInfo.InvariantCulture, $"<line x1=\"{x0 + left}\" y1=\"{top}\" x2=\"{x0 + left}\" y2=\"{top + plotHeight}\" stroke=\"black\"/>\n");
            for (int t = 0; t <= 4; t++)
            {
                double v = max * t / 4;
                s.Append(CultureInfo.InvariantCulture, $"<line x1=\"{x0 + left}\" y1=\"{Y(v):F1}\" x2=\"{x0 + left + plotWidth}\" y2=\"{Y(v):F1}\" stroke=\"#ddd\"/>");
                s.Append(CultureInfo.InvariantCulture, $"<text x=\"{x0 + left - 6}\" y=\"{Y(v) + 4:F1}\" text-anchor=\"end\">{Escape(Short(v))}</text>\n");
            }
            for (int i = 0; i < xs.Length; i++)
                s.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(i):F1}\" y=\"{top + plotHeight + 18}\" text-anchor=\"middle\">{Escape(xs[i])}</text>\n");
            s.Append(CultureInfo.InvariantCulture, $"<text x=\"{x0 + left + plotWidth / 2}\" y=\"{height - 10}\" text-anchor=\"middle\">concurrency (parallel requests)</text>\n");
            for (int k = 0; k < series.Length; k++)
            {
                (string name, string color, double[] values) = series[k];
                string points = string.Join(" ", values.Select((v, i) => string.Create(CultureInfo.InvariantCulture, $"{X(i):F1},{Y(v):F1}")));
                s.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{points}\"><title>{Escape(name)}</title></polyline>\n");
                for (int i = 0; i < values.Length; i++)
                    s.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{X(i):F1}\" cy=\"{Y(values[i]):F1}\" r=\"3.5\" fill=\"{color}\"><title>{Escape($"{name} at {xs[i]}: {Short(values[i])}")}</title></circle>\n");
                s.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x0 + left + 10}\" y=\"{top + 4 + 16 * k}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{x0 + left + 24}\" y=\"{top + 13 + 16 * k}\">{Escape(name)}</text>\n");
            }
            s.Append("</g>\n");
        }
    }

    private static double NiceCeiling(double value)
    {
        if (value <= 0 || double.IsNaN(value))
            return 1;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(value)));
        foreach (double step in (ReadOnlySpan<double>)[1, 2, 2.5, 5, 10])
            if (step * magnitude >= value)
                return step * magnitude;
        return 10 * magnitude;
    }

    private static string Short(double v) => v >= 100 ? v.ToString("F0", CultureInfo.InvariantCulture) : v >= 10 ? v.ToString("F1", CultureInfo.InvariantCulture) : v.ToString("G3", CultureInfo.InvariantCulture);

    private static string Escape(string text) => SecurityElement.Escape(text);
}
