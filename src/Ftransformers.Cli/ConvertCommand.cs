using System.CommandLine;
using Ftransformers.Model;

namespace Ftransformers.Cli;

/// <summary><c>ftransformers convert</c>: writes a checkpoint in a precision preset, to be memory-mapped without re-quantizing.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Original checkpoint folder (BF16, F32 or FP8).", Required = true };
        var output = new Option<string>("--out") { Description = "Folder to write the converted checkpoint to.", Required = true };
        var preset = new Option<string>("--preset") { Description = $"Precision preset: {string.Join(", ", Precision.PresetNames)}.", Required = true };
        var shardSize = new Option<double>("--shard-size-gb") { Description = "Largest shard file, in GB.", DefaultValueFactory = _ => 5 };
        var layout = new Option<string>("--int4-layout") { Description = "INT4 experts laid out as the kernels of the CPU that will serve read them: row-groups (x86 AVX2/AVX-512), rows (ARM64 and others), or auto (this CPU's).", DefaultValueFactory = _ => "auto" };
        layout.AcceptOnlyFromAmong("auto", "rows", "row-groups");
        var command = new Command("convert", "Quantize a checkpoint once and write it in the engine's layout.") { model, output, preset, shardSize, layout };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            double gb = parse.GetValue(shardSize);
            if (!(gb > 0))
                throw new ArgumentException($"--shard-size-gb must be positive, got {gb}.");
            Precision precision = Precision.Parse(parse.GetRequiredValue(preset));
            TextWriter error = parse.InvocationConfiguration.Error;
            await Task.Run(() => CheckpointConverter.Convert(parse.GetRequiredValue(model), parse.GetRequiredValue(output), precision,
                (long)(gb * 1e9), line => error.WriteLine(line), parse.GetValue(layout) switch
                {
                    "rows" => Int4FileLayout.Rows,
                    "row-groups" => Int4FileLayout.RowGroups,
                    _ => null,
                }), ct);
            await parse.InvocationConfiguration.Output.WriteLineAsync($"converted to {precision.Describe()} in {parse.GetRequiredValue(output)}");
            return 0;
        }));
        return command;
    }
}
