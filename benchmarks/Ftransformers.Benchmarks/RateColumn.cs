using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Ftransformers.Benchmarks;

/// <summary>
/// A column of work per second: each case's amount of work (bytes, multiply-adds) over its median, in billions per
/// second; or, given a <paramref name="baseline"/> method, that rate as a share of the baseline's rate measured in the
/// same run with the same parameters (a machine limit such as read bandwidth or compute peak).
/// </summary>
internal sealed class RateColumn(string id, string name, string legend, Func<BenchmarkCase, double> amount, string? baseline = null) : IColumn
{
    public string Id => id;
    public string ColumnName => name;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => baseline == null ? 0 : 1;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => legend;
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? rate = Rate(summary, benchmarkCase);
        if (rate == null)
            return "-";
        if (baseline == null)
            return $"{rate:F1}";
        BenchmarkCase? limit = summary.BenchmarksCases.FirstOrDefault(c => c.Descriptor.WorkloadMethod.Name == baseline
            && c.Parameters.DisplayInfo == benchmarkCase.Parameters.DisplayInfo);
        double? limitRate = limit == null ? null : Rate(summary, limit);
        return limitRate is > 0 ? $"{rate / limitRate:P0}" : "-";
    }

    private double? Rate(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? median = summary[benchmarkCase]?.ResultStatistics?.Median;
        return median is > 0 ? amount(benchmarkCase) / median.Value : null; // per ns = billions per s
    }
}
