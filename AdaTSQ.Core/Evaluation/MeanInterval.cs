using MathNet.Numerics.Distributions;

namespace AdaTSQ.Evaluation;

/// <summary>
/// The Student-t confidence interval of a mean: x̄ ± t_{n−1, (1+level)/2} · s / √n with the sample standard
/// deviation s (n − 1). Used for means of per-image PSNR and SSIM, which are roughly normal at the sample
/// counts evaluated (≥ 100); for n ≥ 1000 it equals the normal interval (1.96 · s / √n) to three digits.
/// </summary>
public static class MeanInterval
{
    /// <summary>
    /// Mean of <paramref name="values"/> with its t interval. With fewer than two values the interval is NaN;
    /// with any non-finite value (e.g. +∞ PSNR of identical images) the estimate is the plain mean and the
    /// interval NaN.
    /// </summary>
    public static ConfidenceInterval Compute(IReadOnlyList<double> values, double level = 0.95)
    {
        ArgumentNullException.ThrowIfNull(values);
        Bootstrap.CheckLevel(level);
        if (values.Count == 0) throw new ArgumentException("the mean of no values is undefined.", nameof(values));
        double mean = values.Average();
        if (values.Count < 2 || values.Any(v => !double.IsFinite(v))) return new ConfidenceInterval(mean, double.NaN, double.NaN, level, "t");
        double variance = values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1);
        double half = StudentT.InvCDF(0, 1, values.Count - 1, (1 + level) / 2) * Math.Sqrt(variance / values.Count);
        return new ConfidenceInterval(mean, mean - half, mean + half, level, "t");
    }
}
