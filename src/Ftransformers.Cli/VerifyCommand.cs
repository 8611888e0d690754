using System.CommandLine;
using System.Text.Json;
using Ftransformers.Model;
using Ftransformers.Verification;
using Ftransformers.Inference;

namespace Ftransformers.Cli;

/// <summary><c>ftransformers verify</c>: replays a golden file through a checkpoint and checks the logits.</summary>
internal static class VerifyCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder (config.json + safetensors), or a deepseek2 GGUF file.", Required = true };
        var golden = new Option<string>("--golden") { Description = "Golden safetensors file (p{i}.tokens, p{i}.prefill_logits, p{i}.greedy_tokens, p{i}.decode_logits).", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of the table." };
        var preset = new Option<string?>("--preset") { Description = $"Precision preset ({string.Join(", ", Precision.PresetNames)}); quantized presets are judged by pooled KL <= 0.02 and top-1 >= 0.80, bf16 by 1e-2 per row." };
        var threads = new Option<int?>("--cpuinfer") { Description = "CPU threads (default: every core)." };
        var numaNodes = new Option<int?>("--numa-nodes") { Description = "NUMA nodes to split threads and routed experts across (default: the machine's; more splits the CPUs into groups)." };
        var command = new Command("verify", "Check a checkpoint against reference logits: full prefill, then greedy decode with the KV cache.") { model, golden, json, preset, threads, numaNodes };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            var prompts = GoldenPrompt.ReadAll(parse.GetRequiredValue(golden));
            Precision? precision = parse.GetValue(preset) is { } name ? Precision.Parse(name) : null;
            var options = new ModelLoadOptions { Precision = precision, NumaNodes = parse.GetValue(numaNodes) };
            if (parse.GetValue(threads) is { } cpus)
                options = options with { CpuThreads = cpus };
            using DeepSeekV3Model loaded = DeepSeekV3Model.Load(parse.GetRequiredValue(model), options);
            if (loaded.Topology is { } topology)
                await parse.InvocationConfiguration.Error.WriteLineAsync($"Compute threads: {topology}");
            IReadOnlyList<PromptVerification> results = await Task.Run(() => ModelVerifier.Verify(loaded, prompts, ct), ct);
            VerificationCriteria criteria = VerificationCriteria.For(loaded.Precision);
            bool pass = criteria.IsMet(results);
            TextWriter output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json))
                await output.WriteLineAsync(ToJson(results, pass));
            else
                await WriteTable(output, results, criteria, pass);
            return pass ? 0 : Program.ExitMismatch;
        }));
        return command;
    }

    private static string ToJson(IReadOnlyList<PromptVerification> results, bool pass) => JsonSerializer.Serialize(new
    {
        prompts = results.Select(r => new
        {
            index = r.Index,
            max_rel_error = r.MaxRelativeError,
            greedy_match = r.GreedyMatch,
            mean_kl = r.MeanKl,
            top1_agreement = r.Top1Agreement,
        }),
        pass,
    });

    private static async Task WriteTable(TextWriter output, IReadOnlyList<PromptVerification> results, VerificationCriteria criteria, bool pass)
    {
        await output.WriteLineAsync($"{"prompt",6} {"tokens",6} {"max rel err",12} {"mean KL",10} {"top-1",7} {"greedy",7}");
        foreach (PromptVerification r in results)
            await output.WriteLineAsync($"{r.Index,6} {r.Tokens,6} {r.MaxRelativeError,12:E2} {r.MeanKl,10:E2} {r.Top1Agreement,7:P1} {(r.GreedyMatch ? "match" : "DIFFER"),7}");
        int rows = results.Sum(r => r.Rows);
        await output.WriteLineAsync($"pooled over {rows} rows: mean KL {results.Sum(r => r.MeanKl * r.Rows) / rows:E2}, top-1 {results.Sum(r => r.Top1Agreement * r.Rows) / rows:P1}");
        await output.WriteLineAsync($"{(pass ? "PASS" : "FAIL")}: required {criteria.Describe()}.");
    }
}
