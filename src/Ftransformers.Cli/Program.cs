using System.CommandLine;

namespace Ftransformers.Cli;

/// <summary>The <c>ftransformers</c> command line.</summary>
public static class Program
{
    /// <summary>Exit code of a run that found a mismatch.</summary>
    public const int ExitMismatch = 1;

    /// <summary>Exit code of a run that could not start: missing files, malformed input.</summary>
    public const int ExitBadInput = 2;

    private static Task<int> Main(string[] args) => RunAsync(args, Console.Out, Console.Error);

    /// <summary>Runs the command line with its output sent to the given writers (tests call this in-process).</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default) =>
        RunAsync(args, Console.In, output, error, cancellationToken);

    /// <summary>As <see cref="RunAsync(string[], TextWriter, TextWriter, CancellationToken)"/>, with <c>chat</c>'s input read from <paramref name="input"/>.</summary>
    public static Task<int> RunAsync(string[] args, TextReader input, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        var root = new RootCommand("Ftransformers: DeepSeek-V3/R1-class inference for .NET.")
        {
            GenerateCommand.Create(),
            ChatCommand.Create(() => input),
            ServeCommand.Create(),
            BenchCommand.Create(),
            VerifyCommand.Create(),
            ConvertCommand.Create(),
            SysinfoCommand.Create(),
            TuneCommand.Create(),
            VerifyTokenizerCommand.Create(),
        };
        ParseResult parse = root.Parse(args);
        // A missing or malformed option is bad input (exit 2), not a verification mismatch (exit 1).
        if (parse.Errors.Count > 0 && parse.Action is not System.CommandLine.Help.HelpAction)
        {
            foreach (var parseError in parse.Errors)
                error.WriteLine($"error: {parseError.Message}");
            return Task.FromResult(ExitBadInput);
        }
        return parse.InvokeAsync(new InvocationConfiguration { Output = output, Error = error }, cancellationToken);
    }

    /// <summary>Runs <paramref name="body"/>, turning input errors into a message on stderr and <see cref="ExitBadInput"/>.</summary>
    internal static async Task<int> GuardInput(ParseResult parse, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException or KeyNotFoundException
            or Microsoft.Extensions.Options.OptionsValidationException or HttpRequestException)
        {
            await parse.InvocationConfiguration.Error.WriteLineAsync($"error: {e.Message}");
            return ExitBadInput;
        }
    }
}
