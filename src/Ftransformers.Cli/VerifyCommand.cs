using System.CommandLine;
using System.Text.Json;
using Ftransformers.Model;
using Ftransformers.Verification;

namespace Ftransformers.Cli;

/// <summary><c>ftransformers verify</c>: replays a golden file through a checkpoint and checks the logits.</summary>
internal static class VerifyCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder (config.json + safetensors).", Required = true };
        var golden = new Option<string>("--golden") { Description = "Golden safetensors file (p{i}.tokens, p{i}.prefill_logits, p{i}.greedy_tokens, p{i}.decode_logits).", Required = true };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of the table." };
        var command = new Command("verify", "Check a checkpoint against reference logits: full prefill, then greedy decode with the KV cache.") { model, golden, json };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            var prompts = GoldenPrompt.ReadAll(parse.GetRequiredValue(golden));
            using DeepSeekV3Model loaded = DeepSeekV3Model.Load(parse.GetRequiredValue(model));
            IReadOnlyList<PromptVerification> results = await Task.Run(() => ModelVerifier.Verify(loaded, prompts, ct), ct);
            bool pass = results.All(r => r.GreedyMatch && r.MaxRelativeError <= ModelVerifier.ExactRelativeErrorBound);
            TextWriter output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json))
                await output.WriteLineAsync(ToJson(results, pass));
            else
                await WriteTable(output, results, pass);
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

    private static async Task WriteTable(TextWriter output, IReadOnlyList<PromptVerification> results, bool pass)
    {
        await output.WriteLineAsync($"{"prompt",6} {"tokens",6} {"max rel err",12} {"mean KL",10} {"top-1",7} {"greedy",7}");
        foreach (PromptVerification r in results)
            await output.WriteLineAsync($"{r.Index,6} {r.Tokens,6} {r.MaxRelativeError,12:E2} {r.MeanKl,10:E2} {r.Top1Agreement,7:P1} {(r.GreedyMatch ? "match" : "DIFFER"),7}");
        await output.WriteLineAsync(pass
            ? $"PASS: every row within {ModelVerifier.ExactRelativeErrorBound:E0} relative error, greedy tokens identical."
            : $"FAIL: a row exceeds {ModelVerifier.ExactRelativeErrorBound:E0} relative error or a greedy token differs.");
    }
}
