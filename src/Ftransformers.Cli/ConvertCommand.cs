using System.CommandLine;
using Ftransformers.Model;

namespace Ftransformers.Cli;

/// <summary><c>ftransformers convert</c>: writes a checkpoint in a precision preset, to be memory-mapped without re-quantizing.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Original checkpoint folder (BF16, F32 or FP8)." };
        var fromGguf = new Option<string>("--from-gguf") { Description = "A DeepSeek-V3 GGUF file (or the first of a split set) to convert instead: as it stores its tensors, or in --preset." };
        var output = new Option<string>("--out") { Description = "Folder to write the converted checkpoint to.", Required = true };
        var preset = new Option<string>("--preset") { Description = $"Precision preset: {string.Join(", ", Precision.PresetNames)} (required with --model; with --from-gguf, absent keeps the file's own formats)." };
        var shardSize = new Option<double>("--shard-size-gb") { Description = "Largest shard file, in GB.", DefaultValueFactory = _ => 5 };
        var layout = new Option<string>("--int4-layout") { Description = "INT4 experts laid out as the kernels of the CPU that will serve read them: row-groups (x86 AVX2/AVX-512), rows (ARM64 and others), or auto (this CPU's).", DefaultValueFactory = _ => "auto" };
        layout.AcceptOnlyFromAmong("auto", "rows", "row-groups");
        var command = new Command("convert", "Quantize a checkpoint once, or take a GGUF file's tensors, and write them in the engine's layout.") { model, fromGguf, output, preset, shardSize, layout };
        command.SetAction((parse, ct) => Program.GuardInput(parse, async () =>
        {
            double gb = parse.GetValue(shardSize);
            if (!(gb > 0))
                throw new ArgumentException($"--shard-size-gb must be positive, got {gb}.");
            string? source = parse.GetValue(model), gguf = parse.GetValue(fromGguf), presetName = parse.GetValue(preset);
            if ((source == null) == (gguf == null))
                throw new ArgumentException("Give the checkpoint to convert as --model FOLDER or --from-gguf FILE (one of them).");
            if (source != null && presetName == null)
                throw new ArgumentException($"--preset is required with --model: {string.Join(", ", Precision.PresetNames)}.");
            Precision? precision = presetName == null ? null : Precision.Parse(presetName);
            Int4FileLayout? int4Layout = parse.GetValue(layout) switch
            {
                "rows" => Int4FileLayout.Rows,
                "row-groups" => Int4FileLayout.RowGroups,
                _ => null,
            };
            TextWriter error = parse.InvocationConfiguration.Error;
            string destination = parse.GetRequiredValue(output);
            await Task.Run(() =>
            {
                if (gguf != null)
                    CheckpointConverter.ConvertGguf(gguf, destination, precision, (long)(gb * 1e9), line => error.WriteLine(line), int4Layout);
                else
                    CheckpointConverter.Convert(source!, destination, precision!, (long)(gb * 1e9), line => error.WriteLine(line), int4Layout);
            }, ct);
            string formats = precision?.Describe() ?? DeepSeekV3Config.Load(destination).ConvertedPrecision?.Describe() ?? "the file's formats";
            await parse.InvocationConfiguration.Output.WriteLineAsync($"converted to {formats} in {destination}");
            return 0;
        }));
        return command;
    }
}
