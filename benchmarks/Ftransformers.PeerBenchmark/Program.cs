using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ftransformers.Formats;
using Ftransformers.Inference;
using Ftransformers.Model;
using LLama;
using LLama.Common;
using LLama.Native;

// Writes random DeepSeek-V3-shaped GGUF files with our writer and runs each in both engines: the prefill of a prompt,
// then decode steps (token ids fed directly, no sampling), at each thread count, engines alternating, medians.
// Usage: dotnet run -c Release --project benchmarks/Ftransformers.PeerBenchmark -- [--threads 1 2] [--rounds 5]
//        [--prompt 256] [--decode 32] [--formats bf16 q8_0] [--output peer-report.md] [--keep DIR]
// --keep writes the files into DIR and leaves them there (to profile one with `ftransformers bench --model FILE --profile`).
var settings = Settings.Parse(args);
string folder = settings.Keep is { } keep ? Directory.CreateDirectory(keep).FullName : Directory.CreateTempSubdirectory("ftransformers-peer-").FullName;
var report = new StringBuilder();
var c = CultureInfo.InvariantCulture;
report.AppendLine("# Ftransformers vs llama.cpp on the same GGUF").AppendLine();
report.AppendLine(c, $"Machine: {Ftransformers.Diagnostics.MachineBaseline.CpuModel()}, {Environment.ProcessorCount} logical cores. Model: {PeerModel.Describe()}. " +
    $"Prompt {settings.Prompt} tokens, then {settings.Decode} decode steps; {settings.Rounds} rounds, engines alternating; medians.").AppendLine();
report.AppendLine("| file | threads | engine | prefill tok/s | decode tok/s | prefill ratio ours / llama.cpp | decode ratio |");
report.AppendLine("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
// Fidelity: each engine's logits on each file against the F32 logits of the weights the files were made from.
// Several prompts (other stretches of the token sequence), pooled: on a random model one prompt's KL swings widely.
const int FidelityTokens = 64, FidelityPrompts = 4;
int[][] fidelityPrompts = [.. Enumerable.Range(0, FidelityPrompts).Select(p => Enumerable.Range(0, FidelityTokens).Select(i => PeerModel.Token(1000 * p + i)).ToArray())];
float[][] referenceLogits = [.. fidelityPrompts.Select(PeerModel.ReferenceLogits)];
var fidelity = new StringBuilder();
fidelity.AppendLine().AppendLine(c, $"Fidelity: every position of {FidelityPrompts} prompts of {FidelityTokens} tokens, pooled, against the F32 logits of the weights the files were made from (ours in F32), each engine on the same file.").AppendLine();
fidelity.AppendLine("| file | engine | mean KL | top-1 agreement |");
fidelity.AppendLine("| --- | --- | ---: | ---: |");
try
{
    foreach (PeerFormat format in PeerModel.Formats.Where(f => settings.Formats.Length == 0 || settings.Formats.Contains(f.Name)))
    {
        string gguf = Path.Combine(folder, format.Name + ".gguf");
        PeerModel.Write(gguf, format);
        foreach (string engine in new[] { "llama.cpp", "ours (the file's formats)" })
        {
            var comparison = new Ftransformers.Verification.LogitComparison();
            for (int p = 0; p < fidelityPrompts.Length; p++)
            {
                float[] logits = engine == "llama.cpp" ? LlamaCppLogits(gguf, fidelityPrompts[p]) : OursLogits(gguf, fidelityPrompts[p]);
                for (int t = 0; t < FidelityTokens; t++)
                    comparison.Add(logits.AsSpan(t * PeerModel.Vocab, PeerModel.Vocab), referenceLogits[p].AsSpan(t * PeerModel.Vocab, PeerModel.Vocab));
            }
            fidelity.AppendLine(c, $"| {format.Name} | {engine} | {comparison.MeanKl:F4} | {comparison.Top1Agreement:P1} |");
        }
        foreach (int threads in settings.Threads)
        {
            var runs = new Dictionary<string, List<(double Prefill, double Decode)>>();
            string[] engines = ["llama.cpp", .. format.Ours.Select(o => $"ours ({o ?? "the file's formats"})")];
            for (int round = 0; round < settings.Rounds; round++)
            {
                // Alternate the order so that neither engine always runs first on a warmer or quieter machine.
                foreach (string engine in round % 2 == 0 ? engines : engines.Reverse())
                {
                    (double prefill, double decode) = engine == "llama.cpp"
                        ? LlamaCpp(gguf, threads, settings)
                        : Ours(gguf, threads, settings, format.Ours[Array.IndexOf(engines, engine) - 1]);
                    (runs.TryGetValue(engine, out var list) ? list : runs[engine] = []).Add((prefill, decode));
                    Console.Error.WriteLine($"{format.Name}, {threads} thread(s), round {round + 1}: {engine} prefill {prefill:F1}, decode {decode:F1} tok/s");
                }
            }
            double llamaPrefill = Median(runs["llama.cpp"].Select(r => r.Prefill)), llamaDecode = Median(runs["llama.cpp"].Select(r => r.Decode));
            foreach (string engine in engines)
            {
                double prefill = Median(runs[engine].Select(r => r.Prefill)), decode = Median(runs[engine].Select(r => r.Decode));
                bool ours = engine != "llama.cpp";
                report.AppendLine(c, $"| {format.Name} | {threads} | {engine} | {prefill:F1} | {decode:F1} | {(ours ? $"{prefill / llamaPrefill:F2}x" : "")} | {(ours ? $"{decode / llamaDecode:F2}x" : "")} |");
            }
        }
    }
}
finally
{
    if (settings.Keep == null)
        Directory.Delete(folder, recursive: true);
}
report.Append(fidelity);
Console.Write(report);
if (settings.Output is { } output)
    File.WriteAllText(output, report.ToString());

static double Median(IEnumerable<double> values)
{
    double[] sorted = [.. values.Order()];
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}

// llama.cpp's logits for every position of one prompt, in one batch.
static float[] LlamaCppLogits(string gguf, int[] tokens)
{
    var parameters = new ModelParams(gguf) { ContextSize = (uint)tokens.Length + 16, BatchSize = (uint)tokens.Length, UBatchSize = (uint)tokens.Length, GpuLayerCount = 0 };
    using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
    using LLamaContext context = weights.CreateContext(parameters);
    var batch = new LLamaBatch();
    for (int i = 0; i < tokens.Length; i++)
        batch.Add(tokens[i], i, LLamaSeqId.Zero, true);
    if (context.Decode(batch) is var result && result != DecodeResult.Ok)
        throw new InvalidOperationException($"llama.cpp could not decode the fidelity prompt of {gguf}: {result}.");
    var logits = new float[tokens.Length * PeerModel.Vocab];
    for (int i = 0; i < tokens.Length; i++)
        context.NativeHandle.GetLogitsIth(i).CopyTo(logits.AsSpan(i * PeerModel.Vocab, PeerModel.Vocab));
    return logits;
}

// Ours on the file's own formats: every position's logits.
static float[] OursLogits(string gguf, int[] tokens)
{
    using DeepSeekV3Model model = DeepSeekV3Model.Load(gguf);
    return model.Forward(tokens, new SequenceKvCache(model.Config), allPositions: true);
}

// llama.cpp through LLamaSharp: one batch for the prompt (logits for its last token), then one token per decode call.
static (double Prefill, double Decode) LlamaCpp(string gguf, int threads, Settings settings)
{
    var parameters = new ModelParams(gguf)
    {
        ContextSize = (uint)(2 * settings.Prompt + settings.Decode + PeerModel.WarmupDecode + 16), Threads = threads, BatchThreads = threads,
        BatchSize = (uint)settings.Prompt, UBatchSize = (uint)settings.Prompt, GpuLayerCount = 0,
    };
    using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
    using LLamaContext context = weights.CreateContext(parameters);
    var batch = new LLamaBatch();
    // Warm-up as ours gets one: the prompt and a few decode steps on another sequence, which the measured one does not attend to.
    for (int i = 0; i < settings.Prompt; i++)
        batch.Add(PeerModel.Token(i), i, (LLamaSeqId)1, i == settings.Prompt - 1);
    context.Decode(batch);
    for (int t = 0; t < PeerModel.WarmupDecode; t++)
    {
        batch.Clear();
        batch.Add(PeerModel.Token(settings.Prompt + t), settings.Prompt + t, (LLamaSeqId)1, true);
        context.Decode(batch);
    }
    batch.Clear();
    for (int i = 0; i < settings.Prompt; i++)
        batch.Add(PeerModel.Token(i), i, LLamaSeqId.Zero, i == settings.Prompt - 1);
    var clock = Stopwatch.StartNew();
    context.Decode(batch);
    double prefill = settings.Prompt / clock.Elapsed.TotalSeconds;
    clock.Restart();
    for (int t = 0; t < settings.Decode; t++)
    {
        batch.Clear();
        batch.Add(PeerModel.Token(settings.Prompt + t), settings.Prompt + t, LLamaSeqId.Zero, true);
        context.Decode(batch);
    }
    return (prefill, settings.Decode / clock.Elapsed.TotalSeconds);
}

// Ours: the model's forward pass over the same tokens (full prefill, logits of the last row; then one token a step).
static (double Prefill, double Decode) Ours(string gguf, int threads, Settings settings, string? preset)
{
    using DeepSeekV3Model model = DeepSeekV3Model.Load(gguf, new ModelLoadOptions { CpuThreads = threads, Precision = preset == null ? null : Precision.Parse(preset) });
    var cache = new SequenceKvCache(model.Config);
    int[] prompt = [.. Enumerable.Range(0, settings.Prompt).Select(PeerModel.Token)];
    var warmup = new SequenceKvCache(model.Config);
    model.Forward(prompt, warmup);
    for (int t = 0; t < PeerModel.WarmupDecode; t++)
        model.Forward([PeerModel.Token(settings.Prompt + t)], warmup);
    var clock = Stopwatch.StartNew();
    model.Forward(prompt, cache);
    double prefill = settings.Prompt / clock.Elapsed.TotalSeconds;
    clock.Restart();
    for (int t = 0; t < settings.Decode; t++)
        model.Forward([PeerModel.Token(settings.Prompt + t)], cache);
    return (prefill, settings.Decode / clock.Elapsed.TotalSeconds);
}

/// <summary>The command line.</summary>
internal sealed record Settings(int[] Threads, int Rounds, int Prompt, int Decode, string[] Formats, string? Output, string? Keep)
{
    public static Settings Parse(string[] args)
    {
        int[] threads = [1, Math.Max(1, Environment.ProcessorCount)];
        int rounds = 5, prompt = 256, decode = 32;
        string? output = null, keep = null;
        var formats = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--threads":
                    var list = new List<int>();
                    while (i + 1 < args.Length && int.TryParse(args[i + 1], out int t))
                    {
                        list.Add(t);
                        i++;
                    }
                    threads = [.. list.Distinct()];
                    break;
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--prompt": prompt = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--decode": decode = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--output": output = args[++i]; break;
                case "--keep": keep = args[++i]; break;
                case "--formats":
                    while (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                        formats.Add(args[++i]);
                    break;
                default: throw new ArgumentException($"Unknown argument '{args[i]}'; expected --threads, --rounds, --prompt, --decode, --formats, --output or --keep.");
            }
        }
        if (threads.Length == 0 || threads.Any(t => t < 1) || rounds < 1 || prompt < 1 || decode < 1)
            throw new ArgumentException("--threads, --rounds, --prompt and --decode need positive values.");
        string[] known = [.. PeerModel.Formats.Select(f => f.Name)];
        if (formats.FirstOrDefault(f => !known.Contains(f)) is { } unknown)
            throw new ArgumentException($"Unknown format '{unknown}'; the formats are {string.Join(", ", known)}.");
        return new Settings(threads.Distinct().ToArray(), rounds, prompt, decode, [.. formats], output, keep);
    }
}
