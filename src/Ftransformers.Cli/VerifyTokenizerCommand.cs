using System.CommandLine;
using System.Text.Json;
using Ftransformers.Tokenization;

namespace Ftransformers.Cli;

/// <summary>
/// <c>verify-tokenizer --tokenizer DIR --golden FILE [--json]</c>: checks a tokenizer folder against
/// golden encodings. Exit code 0 when everything matches, 1 on any mismatch, 2 when an input is
/// missing or unreadable.
/// </summary>
internal static class VerifyTokenizerCommand
{
    public const int ExitPass = 0;
    public const int ExitMismatch = 1;
    public const int ExitBadInput = 2;

    public static Command Create()
    {
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "Folder with tokenizer.json and tokenizer_config.json",
            Required = true,
        };
        var golden = new Option<string>("--golden")
        {
            Description = "Golden encodings file (golden_encodings.json)",
            Required = true,
        };
        var json = new Option<bool>("--json")
        {
            Description = "Print one JSON object instead of a table",
        };

        var command = new Command("verify-tokenizer", "Check a tokenizer against golden encodings and the golden chat rendering")
        {
            tokenizer, golden, json,
        };
        command.SetAction(parse => Run(
            parse.GetValue(tokenizer)!,
            parse.GetValue(golden)!,
            parse.GetValue(json),
            parse.InvocationConfiguration.Output,
            parse.InvocationConfiguration.Error));
        return command;
    }

    private static int Run(string tokenizerDirectory, string goldenFile, bool json, TextWriter output, TextWriter error)
    {
        TokenizerVerificationResult result;
        try
        {
            result = TokenizerVerifier.Verify(tokenizerDirectory, goldenFile);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            error.WriteLine($"verify-tokenizer: {e.Message}");
            return ExitBadInput;
        }

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new
            {
                cases = result.Cases,
                mismatches = result.Mismatches,
                chat_template_match = result.ChatTemplateMatch,
                pass = result.Pass,
            }));
        }
        else
        {
            foreach (string mismatch in result.MismatchDescriptions)
                output.WriteLine($"MISMATCH  {mismatch}");
            output.WriteLine($"{"cases",-15}{result.Cases}");
            output.WriteLine($"{"mismatches",-15}{result.Mismatches}");
            output.WriteLine($"{"chat template",-15}{(result.ChatTemplateMatch ? "match" : "MISMATCH")}");
            output.WriteLine($"{"result",-15}{(result.Pass ? "PASS" : "FAIL")}");
        }
        return result.Pass ? ExitPass : ExitMismatch;
    }
}
