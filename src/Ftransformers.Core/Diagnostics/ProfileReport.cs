using System.Globalization;
using System.Security;
using System.Text;
using Ftransformers.Backends;
using Ftransformers.Inference;
using Ftransformers.Model;

namespace Ftransformers.Diagnostics;

/// <summary>One part's mean per step, and how it compares with the machine.</summary>
/// <param name="Kind">Decode or prefill steps.</param>
/// <param name="Part">The part, summed over layers.</param>
/// <param name="MillisecondsPerStep">Mean wall time per step.</param>
/// <param name="ShareOfStep">Its share of the step's wall time (the shared experts' lies inside the routed experts').</param>
/// <param name="MegabytesPerStep">Weight and KV bytes read per step, 10^6.</param>
/// <param name="GigabytesPerSecond">Bytes read over its time, 10^9 per second.</param>
/// <param name="BandwidthShare">Of the machine's read bandwidth (all nodes); null without a baseline.</param>
/// <param name="GigaMultiplyAddsPerSecond">Multiply-adds over its time, 10^9 per second.</param>
/// <param name="ComputeShare">Of the peak of the part's arithmetic (INT8 for W8A8 and INT4 weights, F32 FMA otherwise); null without a baseline or for parts without weights.</param>
public sealed record ProfileRow(StepKind Kind, ModelPart Part, double MillisecondsPerStep, double ShareOfStep, double MegabytesPerStep,
    double GigabytesPerSecond, double? BandwidthShare, double GigaMultiplyAddsPerSecond, double? ComputeShare);

/// <summary>
/// A <see cref="ForwardProfileSnapshot"/> judged against a <see cref="MachineBaseline"/>: a table per step kind (the
/// parts summed over layers, per step) and a flame-style SVG of the mean step (layers, and the parts of each).
/// </summary>
public sealed class ProfileReport(ForwardProfileSnapshot snapshot, MachineBaseline? machine)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private readonly Precision precision = snapshot.Precision;

    /// <summary>The profile.</summary>
    public ForwardProfileSnapshot Snapshot => snapshot;

    /// <summary>The machine it is judged against; null reports no shares.</summary>
    public MachineBaseline? Machine => machine;

    /// <summary>The rows of each kind of step counted, parts in the order a step runs them.</summary>
    public IReadOnlyList<ProfileRow> Rows()
    {
        var rows = new List<ProfileRow>();
        foreach (StepProfile kind in (StepProfile[])[snapshot.Decode, snapshot.Prefill])
        {
            if (kind.Steps == 0)
                continue;
            double step = kind.StepTime.TotalSeconds;
            foreach (ModelPart part in Enum.GetValues<ModelPart>())
            {
                PartTime total = kind.Total(part);
                if (total.Time == TimeSpan.Zero && total.Bytes == 0)
                    continue;
                double seconds = total.Time.TotalSeconds / kind.Steps, time = Math.Max(total.Time.TotalSeconds, 1e-12);
                double gbps = total.Bytes / time / 1e9, gmacs = total.MultiplyAdds / time / 1e9;
                double? peak = PeakOf(part);
                rows.Add(new ProfileRow(kind.Kind, part, seconds * 1000, step > 0 ? seconds / step : 0, total.Bytes / 1e6 / kind.Steps, gbps,
                    machine is { ReadGBps: > 0 } m ? gbps / m.ReadGBps : null, gmacs, peak is > 0 && total.MultiplyAdds > 0 ? gmacs / peak : null));
            }
        }
        return rows;
    }

    // The peak of the arithmetic a part's weights compute with.
    private double? PeakOf(ModelPart part)
    {
        WeightFormat? format = part switch
        {
            ModelPart.Attention => precision.Attention,
            ModelPart.DenseMlp => precision.DenseMlp,
            ModelPart.SharedExperts => precision.SharedExperts,
            ModelPart.RoutedExperts => precision.RoutedExperts,
            ModelPart.Head => precision.LmHead,
            ModelPart.Router => WeightFormat.Native,
            _ => null,
        };
        return format switch
        {
            null => null,
            WeightFormat.W8A8 or WeightFormat.Int4 or WeightFormat.Q4K or WeightFormat.Gguf => machine?.IntegerGigaMacs,
            _ => machine?.FloatGigaMacs,
        };
    }

    /// <summary>A Markdown section: a table per step kind, and how to read it.</summary>
    public string ToMarkdown()
    {
        var md = new StringBuilder();
        foreach (StepProfile kind in (StepProfile[])[snapshot.Decode, snapshot.Prefill])
        {
            if (kind.Steps == 0)
                continue;
            md.AppendLine(C, $"### {kind.Kind} steps: {kind.Steps}, {(double)kind.Tokens / kind.Steps:F1} tokens and {(double)kind.Sequences / kind.Steps:F1} sequences per step, {kind.StepTime.TotalMilliseconds:F3} ms per step").AppendLine();
            md.AppendLine("| part | ms / step | share of step | MB read / step | GB/s | share of bandwidth | G multiply-adds/s | share of compute peak |");
            md.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (ProfileRow r in Rows().Where(r => r.Kind == kind.Kind))
                md.AppendLine(C, $"| {Name(r.Part)} | {r.MillisecondsPerStep:F3} | {r.ShareOfStep:P1} | {r.MegabytesPerStep:F2} | {r.GigabytesPerSecond:F2} | {Share(r.BandwidthShare)} | {r.GigaMultiplyAddsPerSecond:F2} | {Share(r.ComputeShare)} |");
            md.AppendLine();
        }
        if (md.Length == 0)
            return "No steps were profiled.\n";
        md.AppendLine(machine is { } m
            ? string.Create(C, $"Judged against this machine's baseline (`ftransformers sysinfo`, {m.Measured:yyyy-MM-dd}): read {m.ReadGBps:F1} GB/s over {m.Nodes.Count} node(s), INT8 peak {Peak(m.IntegerGigaMacs)} ({m.IntegerPath}), F32 peak {Peak(m.FloatGigaMacs)} ({m.FloatPath} FMA) G multiply-adds/s. ")
            : "No machine baseline: run `ftransformers sysinfo` to judge parts against the machine. ");
        md.AppendLine("Bytes are the weights each part reads per step (every weight once, as stored) plus, for attention, each sequence's cached KV rows once. " +
            "Shared experts run on the engine thread while the routed experts stream, so their time lies inside the routed experts' and is not added to the step. " +
            "The share of compute peak compares multiply-adds (weights x tokens, plus attention's scores and contexts) with the peak of the part's arithmetic.");
        return md.ToString();

        static string Share(double? share) => share is { } s ? s.ToString("P1", C) : "-";
        static string Peak(double? peak) => peak is { } p ? p.ToString("F1", C) : "-";
    }

    private static string Name(ModelPart part) => part switch
    {
        ModelPart.DenseMlp => "dense MLP",
        ModelPart.SharedExperts => "shared experts (inside routed)",
        ModelPart.RoutedExperts => "routed experts",
        _ => part.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// A flame-style SVG of the mean step of each kind: the step at the bottom, above it scheduling, embedding, each
    /// layer, head and sampling in the order they run, above each layer its parts, and the shared experts above the
    /// routed experts they overlap. Widths are mean times; hovering shows the numbers.
    /// </summary>
    public string ToSvg()
    {
        const double width = 1200, rowHeight = 20, margin = 10;
        StepProfile[] kinds = [.. ((StepProfile[])[snapshot.Decode, snapshot.Prefill]).Where(k => k.Steps > 0)];
        double height = margin + kinds.Length * (4 * rowHeight + 40) + margin;
        var svg = new StringBuilder();
        svg.Append(C, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width + 2 * margin}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n");
        svg.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        double top = margin;
        foreach (StepProfile kind in kinds)
        {
            double stepMs = kind.StepTime.TotalMilliseconds, scale = stepMs > 0 ? width / stepMs : 0;
            double baseY = top + 20 + 3 * rowHeight;
            svg.Append(C, $"<text x=\"{margin}\" y=\"{top + 14}\" font-weight=\"bold\">{Escape($"Mean {kind.Kind.ToString().ToLowerInvariant()} step: {stepMs:F3} ms ({kind.Steps} steps, {(double)kind.Tokens / kind.Steps:F1} tokens each)")}</text>\n");
            Bar(margin, baseY, width, $"{kind.Kind} step", $"{stepMs:F3} ms", "#c0c0c0");
            double x = margin;
            double Ms(PartTime p) => p.Time.TotalMilliseconds / kind.Steps;
            // Outside the layers first and last; layers in between, in order.
            IEnumerable<(int Layer, ModelPart[] Parts)> order =
            [
                (-1, [ModelPart.Scheduling, ModelPart.Embedding]),
                .. Enumerable.Range(0, snapshot.DenseLayers + snapshot.MoeLayers).Select(l => (l, new[] { ModelPart.Attention, ModelPart.DenseMlp, ModelPart.Router, ModelPart.RoutedExperts })),
                (-1, [ModelPart.Head, ModelPart.Sampling]),
            ];
            foreach ((int layer, ModelPart[] parts) in order)
            {
                PartTime[] present = [.. parts.Select(p => kind.Parts.FirstOrDefault(t => t.Layer == layer && t.Part == p)).OfType<PartTime>()];
                if (layer >= 0)
                {
                    double layerMs = present.Sum(Ms);
                    Bar(x, baseY - rowHeight, layerMs * scale, $"layer {layer}", $"{layerMs:F3} ms", "#e6a04a");
                }
                foreach (PartTime p in present)
                {
                    double w = Ms(p) * scale;
                    Bar(x, baseY - (layer >= 0 ? 2 : 1) * rowHeight, w, Name(p.Part), Detail(p), Color(p.Part));
                    if (p.Part == ModelPart.RoutedExperts && kind.Parts.FirstOrDefault(t => t.Layer == layer && t.Part == ModelPart.SharedExperts) is { } shared)
                        Bar(x, baseY - 3 * rowHeight, Ms(shared) * scale, Name(shared.Part), Detail(shared), Color(shared.Part));
                    x += w;
                }
            }
            top += 4 * rowHeight + 40;

            string Detail(PartTime p) => string.Create(C, $"{(p.Layer >= 0 ? $"layer {p.Layer}, " : "")}{Ms(p):F3} ms, {p.Bytes / 1e6 / kind.Steps:F2} MB/step, {p.Bytes / Math.Max(p.Time.TotalSeconds, 1e-12) / 1e9:F2} GB/s");
        }
        svg.Append("</svg>\n");
        return svg.ToString();

        void Bar(double x, double y, double w, string label, string detail, string color)
        {
            if (w <= 0)
                return;
            svg.Append(C, $"<g><title>{Escape($"{label}: {detail}")}</title><rect x=\"{x:F2}\" y=\"{y:F1}\" width=\"{w:F2}\" height=\"{rowHeight - 1}\" fill=\"{color}\" stroke=\"white\" stroke-width=\"0.5\"/>");
            if (w > 7 * label.Length)
                svg.Append(C, $"<text x=\"{x + 3:F2}\" y=\"{y + 14:F1}\">{Escape(label)}</text>");
            svg.Append("</g>\n");
        }
    }

    private static string Color(ModelPart part) => part switch
    {
        ModelPart.Attention => "#5b9bd5",
        ModelPart.DenseMlp => "#70ad47",
        ModelPart.Router => "#ffc000",
        ModelPart.RoutedExperts => "#ed7d31",
        ModelPart.SharedExperts => "#a5a5a5",
        ModelPart.Head or ModelPart.Embedding => "#7030a0",
        _ => "#4d4d4d",
    };

    private static string Escape(string text) => SecurityElement.Escape(text);
}
