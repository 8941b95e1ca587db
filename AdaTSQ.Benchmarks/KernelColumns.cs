using AdaTSQ.Kernels;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace AdaTSQ.Benchmarks;

/// <summary>
/// A short job for the kernel benchmarks (in process, 1 launch, 2 warm-ups, 5 measured iterations of about 200 ms) and the
/// GOPS / fraction-of-VNNI-peak columns computed from the M, K, N parameters and the mean time.
/// </summary>
public sealed class KernelBenchmarkConfig : ManualConfig
{
    /// <summary>Short job plus the GOPS and %peak columns.</summary>
    public KernelBenchmarkConfig()
    {
        AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(5)
            .WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(200))
            .WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance).WithId("Short"));
        AddColumn(new GopsColumn(false), new GopsColumn(true));
    }
}

/// <summary>2·M·N·K / mean time, and that as a fraction of the register-only vpdpbusd peak.</summary>
public sealed class GopsColumn(bool fractionOfPeak) : IColumn
{
    private static readonly Lazy<double> Peak = new(() =>
    {
        if (!NativeKernels.IsSupported(KernelIsa.Avx512Vnni)) return double.NaN;
        double peak = IntegerGemm.MeasureVnniPeakGops(KernelIsa.Avx512Vnni, 50_000_000, 2);
        Console.WriteLine($"// register-only 512-bit vpdpbusd peak in this process: {peak:F0} GOPS (2 threads); load {File.ReadAllText("/proc/loadavg").Trim()}");
        return peak;
    });

    /// <summary>The peak measured in the host process (2 threads, 512-bit vpdpbusd, register operands only).</summary>
    public static double PeakGops => Peak.Value;

    /// <inheritdoc />
    public string Id => fractionOfPeak ? "PeakFraction" : "Gops";
    /// <inheritdoc />
    public string ColumnName => fractionOfPeak ? "%VNNI peak" : "GOPS";
    /// <inheritdoc />
    public bool AlwaysShow => true;
    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;
    /// <inheritdoc />
    public int PriorityInCategory => fractionOfPeak ? 1 : 0;
    /// <inheritdoc />
    public bool IsNumeric => true;
    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;
    /// <inheritdoc />
    public string Legend => fractionOfPeak ? "GOPS / register-only 512-bit vpdpbusd peak (2 threads, measured in the host process)" : "2·M·N·K / mean time, 10^9 per second";
    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => true;
    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is null) return "-";
        double m = 0, k = 0, n = 0;
        foreach (var p in benchmarkCase.Parameters.Items)
        {
            if (p.Name == "M") m = Convert.ToDouble(p.Value);
            if (p.Name == "Shape" && p.Value is string s && s.Split('x') is [var ks, var ns]) { k = double.Parse(ks); n = double.Parse(ns); }
        }
        if (m == 0 || k == 0) return "-";
        double gops = 2 * m * n * k / report.ResultStatistics.Mean; // ns → GOPS
        return fractionOfPeak ? (double.IsNaN(PeakGops) ? "-" : $"{100 * gops / PeakGops:F0} %") : $"{gops:F0}";
    }
}
