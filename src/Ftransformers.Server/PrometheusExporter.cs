using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Ftransformers.Hosting;

namespace Ftransformers.Server;

/// <summary>
/// Listens to the instruments of one <see cref="FtransformersMetrics"/> meter and renders them in the Prometheus text
/// format (version 0.0.4): counters as <c>_total</c>, histograms with cumulative buckets, gauges as read at scrape
/// time. Names are the instrument's with dots as underscores and the unit appended (<c>s</c> becomes <c>_seconds</c>).
/// </summary>
public sealed class PrometheusExporter : IDisposable
{
    /// <summary>The content type of <see cref="Render"/>'s output.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    // Upper bounds for latency histograms in seconds: from 1 ms (a fast decode step) to minutes (a long queue).
    private static readonly double[] SecondsBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

    private readonly MeterListener _listener = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<Instrument, Series> _series = [];

    /// <summary>Starts listening to <paramref name="metrics"/>' meter (and no other, so hosts in one process stay apart).</summary>
    public PrometheusExporter(FtransformersMetrics metrics)
    {
        Meter meter = metrics.Meter;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter != meter)
                return;
            lock (_lock)
                _series[instrument] = new Series(instrument);
            listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.Start();
    }

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        string labels = Labels(tags);
        lock (_lock)
            if (_series.TryGetValue(instrument, out Series? series))
                series.Record(labels, value);
    }

    /// <summary>The current values of every instrument in the Prometheus text format.</summary>
    public string Render()
    {
        var text = new StringBuilder();
        lock (_lock)
        {
            foreach (Series series in _series.Values)
                if (series.IsGauge)
                    series.Values.Clear();
            _listener.RecordObservableInstruments();
            foreach (Series series in _series.Values.OrderBy(s => s.Instrument.Name, StringComparer.Ordinal))
                series.Write(text);
        }
        return text.ToString();
    }

    /// <summary>Stops listening.</summary>
    public void Dispose() => _listener.Dispose();

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0)
            return "";
        var labels = new List<string>(tags.Length);
        foreach (var (key, value) in tags)
        {
            string escaped = (Convert.ToString(value, CultureInfo.InvariantCulture) ?? "").Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
            labels.Add($"{key.Replace('.', '_')}=\"{escaped}\"");
        }
        labels.Sort(StringComparer.Ordinal);
        return string.Join(",", labels);
    }

    private static string Number(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : value.ToString(CultureInfo.InvariantCulture);

    private sealed class Series(Instrument instrument)
    {
        public Instrument Instrument { get; } = instrument;
        private readonly Type _kind = instrument.GetType().IsGenericType ? instrument.GetType().GetGenericTypeDefinition() : instrument.GetType();
        public bool IsGauge => _kind == typeof(ObservableGauge<>) || _kind == typeof(Gauge<>);
        private bool IsCounter => _kind == typeof(Counter<>) || _kind == typeof(ObservableCounter<>);
        private bool IsHistogram => _kind == typeof(Histogram<>);

        // Per label set: the sum (counters), the last value (gauges), or the histogram state.
        public Dictionary<string, double> Values { get; } = [];
        private readonly Dictionary<string, Buckets> _histograms = [];

        private string BaseName
        {
            get
            {
                string name = Instrument.Name.Replace('.', '_').Replace('-', '_');
                return Instrument.Unit == "s" ? name + "_seconds" : name;
            }
        }

        public void Record(string labels, double value)
        {
            if (IsHistogram)
            {
                if (!_histograms.TryGetValue(labels, out Buckets? histogram))
                    _histograms[labels] = histogram = new Buckets();
                histogram.Record(value);
            }
            else if (IsCounter)
                Values[labels] = Values.GetValueOrDefault(labels) + value;
            else
                Values[labels] = IsGauge ? value : Values.GetValueOrDefault(labels) + value;
        }

        public void Write(StringBuilder text)
        {
            string name = IsCounter ? BaseName + "_total" : BaseName;
            string type = IsHistogram ? "histogram" : IsCounter ? "counter" : "gauge";
            text.Append("# HELP ").Append(name).Append(' ').Append(Instrument.Description ?? Instrument.Name).Append('\n');
            text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            if (IsHistogram)
            {
                foreach (var (labels, histogram) in _histograms)
                    histogram.Write(text, name, labels);
                return;
            }
            foreach (var (labels, value) in Values)
                text.Append(name).Append(labels.Length > 0 ? "{" + labels + "}" : "").Append(' ').Append(Number(value)).Append('\n');
        }
    }

    private sealed class Buckets
    {
        private readonly long[] _counts = new long[SecondsBuckets.Length];
        private long _count;
        private double _sum;

        public void Record(double value)
        {
            int bucket = Array.FindIndex(SecondsBuckets, bound => value <= bound);
            if (bucket >= 0)
                _counts[bucket]++;
            _count++;
            _sum += value;
        }

        public void Write(StringBuilder text, string name, string labels)
        {
            string prefix = labels.Length > 0 ? labels + "," : "";
            long cumulative = 0;
            for (int i = 0; i < SecondsBuckets.Length; i++)
            {
                cumulative += _counts[i];
                text.Append(name).Append("_bucket{").Append(prefix).Append("le=\"").Append(Number(SecondsBuckets[i])).Append("\"} ").Append(cumulative).Append('\n');
            }
            text.Append(name).Append("_bucket{").Append(prefix).Append("le=\"+Inf\"} ").Append(_count).Append('\n');
            string suffix = labels.Length > 0 ? "{" + labels + "}" : "";
            text.Append(name).Append("_sum").Append(suffix).Append(' ').Append(Number(_sum)).Append('\n');
            text.Append(name).Append("_count").Append(suffix).Append(' ').Append(_count).Append('\n');
        }
    }
}
