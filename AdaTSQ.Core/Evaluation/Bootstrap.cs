using AdaTSQ.Abstractions;
using AdaTSQ.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Evaluation;

/// <summary>
/// Seeded percentile bootstrap (Efron): draw <c>resamples</c> samples of size n with replacement from the n
/// per-sample values, compute the statistic on each, and take the (1 − level)/2 and (1 + level)/2 quantiles
/// of those B values (linear interpolation between order statistics) as the interval. The estimate is the
/// statistic on the original sample. The draws come from <c>new Random(seed)</c>, so equal inputs and seeds
/// give equal intervals on every run and machine.
/// </summary>
public static class Bootstrap
{
    /// <summary>Default number of resamples.</summary>
    public const int DefaultResamples = 1000;

    /// <summary>Percentile-bootstrap interval of any statistic of per-sample values.</summary>
    /// <param name="values">One value per sample (n ≥ 2).</param>
    /// <param name="statistic">The statistic of a sample (called once on the original and once per resample).</param>
    /// <param name="resamples">B ≥ 2.</param>
    /// <param name="level">Coverage in (0, 1).</param>
    /// <param name="seed">Seed of the resampling.</param>
    public static ConfidenceInterval Percentile(IReadOnlyList<double> values, Func<double[], double> statistic,
        int resamples = DefaultResamples, double level = 0.95, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(statistic);
        CheckArguments(values.Count, resamples, level);
        var original = values.ToArray();
        var rng = new Random(seed);
        var stats = new double[resamples];
        var draw = new double[original.Length];
        for (int b = 0; b < resamples; b++)
        {
            for (int i = 0; i < draw.Length; i++) draw[i] = original[rng.Next(original.Length)];
            stats[b] = statistic(draw);
        }
        return Interval(statistic(original), stats, level, Describe(resamples, seed));
    }

    /// <summary>Percentile-bootstrap interval of the mean of <paramref name="values"/>.</summary>
    public static ConfidenceInterval Mean(IReadOnlyList<double> values, int resamples = DefaultResamples, double level = 0.95, int seed = 0) =>
        Percentile(values, v => v.Average(), resamples, level, seed);

    /// <summary>Percentile-bootstrap interval of a proportion (e.g. class accuracy) of per-sample outcomes.</summary>
    public static ConfidenceInterval Proportion(IReadOnlyList<bool> outcomes, int resamples = DefaultResamples, double level = 0.95, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(outcomes);
        return Mean(outcomes.Select(o => o ? 1.0 : 0.0).ToArray(), resamples, level, seed);
    }

    /// <summary>
    /// Percentile-bootstrap interval of the Fréchet distance between the Gaussian fitted to the rows of
    /// <paramref name="features"/> (n generated samples × d, float32 or float64) and the fixed
    /// <paramref name="reference"/> statistics: each resample draws n generated rows with replacement; the
    /// reference is not resampled (it comes from a larger real set and is shared by every row of a report).
    /// Each resample costs one d × d covariance and one symmetric eigen-decomposition (LibTorch, float64).
    /// <para>
    /// FID is biased upwards at finite n, and a resample (which repeats about a third of the rows) has fewer
    /// distinct rows, so the resampled distances sit above the estimate: with 512-d features the percentile
    /// interval can miss the estimate entirely (20 samples: 481 with a percentile interval of [508, 600]). The
    /// default <see cref="BootstrapInterval.Normal"/> interval is therefore θ̂ ± z · (standard deviation of the
    /// resampled distances): it measures the sampling variability around the estimate and leaves the bias, which
    /// is the same for every setting evaluated with the same n and reference, to the reader.
    /// </para>
    /// </summary>
    /// <param name="features">Generated feature rows [n, d].</param>
    /// <param name="reference">The fixed reference statistics (e.g. of the real test set).</param>
    /// <param name="resamples">B ≥ 2.</param>
    /// <param name="level">Coverage in (0, 1).</param>
    /// <param name="seed">Seed of the resampling.</param>
    /// <param name="progress">Progress, one unit per resample (stage "FID bootstrap").</param>
    /// <param name="interval">How the interval is formed from the resampled distances.</param>
    public static ConfidenceInterval FrechetDistance(Tensor features, FeatureStatistics reference,
        int resamples = DefaultResamples, double level = 0.95, int seed = 0, IProgress<QuantizationProgress>? progress = null,
        BootstrapInterval interval = BootstrapInterval.Normal)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(reference);
        if (features.Dimensions != 2 || features.shape[1] != reference.Dimension)
            throw new ArgumentException($"features are [{string.Join(", ", features.shape)}]; expected [n, {reference.Dimension}] to match the reference statistics.", nameof(features));
        int n = checked((int)features.shape[0]);
        CheckArguments(n, resamples, level);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var fid = new FrechetToReference(reference);
        var x = features.to(ScalarType.Float64).cpu();
        double estimate = fid.Compute(x, null);
        var rng = new Random(seed);
        var stats = new double[resamples];
        var counts = new double[n];
        for (int b = 0; b < resamples; b++)
        {
            Array.Clear(counts);
            for (int i = 0; i < n; i++) counts[rng.Next(n)]++;
            using var inner = torch.NewDisposeScope();
            stats[b] = fid.Compute(x, torch.tensor(counts, dtype: ScalarType.Float64));
            if ((b + 1) % 10 == 0 || b + 1 == resamples) progress?.Report(new QuantizationProgress("FID bootstrap", b + 1, resamples));
        }
        if (interval == BootstrapInterval.Percentile) return Interval(estimate, stats, level, Describe(resamples, seed));
        double mean = stats.Average();
        double sd = Math.Sqrt(stats.Sum(v => (v - mean) * (v - mean)) / (resamples - 1));
        double half = MathNet.Numerics.Distributions.Normal.InvCDF(0, 1, (1 + level) / 2) * sd;
        return new ConfidenceInterval(estimate, estimate - half, estimate + half, level,
            $"normal bootstrap (estimate ± z · bootstrap SD), {resamples} resamples, seed {seed}");
    }

    internal static void CheckLevel(double level)
    {
        if (!(level > 0 && level < 1)) throw new ArgumentOutOfRangeException(nameof(level), level, "the confidence level must be in (0, 1), e.g. 0.95.");
    }

    private static void CheckArguments(int n, int resamples, double level)
    {
        if (n < 2) throw new ArgumentException($"a bootstrap needs at least 2 samples, got {n}.");
        if (resamples < 2) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "a bootstrap needs at least 2 resamples.");
        CheckLevel(level);
    }

    private static string Describe(int resamples, int seed) => $"percentile bootstrap, {resamples} resamples, seed {seed}";

    private static ConfidenceInterval Interval(double estimate, double[] stats, double level, string method)
    {
        Array.Sort(stats);
        return new ConfidenceInterval(estimate, Quantile(stats, (1 - level) / 2), Quantile(stats, (1 + level) / 2), level, method);
    }

    /// <summary>The q-quantile of sorted values with linear interpolation between order statistics (Hyndman–Fan type 7).</summary>
    internal static double Quantile(double[] sorted, double q)
    {
        double h = (sorted.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>
    /// d² to fixed reference statistics for (weighted) feature rows: tr(Σ_r^{1/2} Σ_g Σ_r^{1/2})^{1/2} through the
    /// eigenvalues of that symmetric matrix; Σ_r^{1/2} is computed once. The same quantity as
    /// <see cref="Metrics.FrechetDistance.Compute"/> (the eigenvalues of Σ_g^{1/2} Σ_r Σ_g^{1/2} and Σ_r^{1/2} Σ_g Σ_r^{1/2} are equal).
    /// </summary>
    private sealed class FrechetToReference
    {
        private readonly Tensor _mu;
        private readonly Tensor _sqrtCov;
        private readonly double _traceCov;

        public FrechetToReference(FeatureStatistics reference)
        {
            int d = reference.Dimension;
            _mu = torch.tensor(reference.Mean, dtype: ScalarType.Float64);
            var cov = torch.tensor(reference.Covariance.Cast<double>().ToArray(), [d, d], dtype: ScalarType.Float64);
            cov = (cov + cov.t()) / 2;
            var (values, vectors) = torch.linalg.eigh(cov);
            _sqrtCov = vectors.mm(torch.diag(values.clamp_min(0).sqrt())).mm(vectors.t());
            _traceCov = cov.trace().item<double>();
        }

        /// <summary>d² for rows x [n, d] with multiplicities <paramref name="counts"/> [n] (null = each once).</summary>
        public double Compute(Tensor x, Tensor? counts)
        {
            using var scope = torch.NewDisposeScope();
            long n = x.shape[0];
            var w = counts ?? torch.ones(n, dtype: ScalarType.Float64);
            var mu = w.matmul(x) / n;
            var centered = x - mu;
            var cov = (centered.t() * w).mm(centered) / (n - 1);
            var inner = _sqrtCov.mm(cov).mm(_sqrtCov);
            inner = (inner + inner.t()) / 2;
            double traceSqrt = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum().item<double>();
            double meanTerm = (mu - _mu).pow(2).sum().item<double>();
            return meanTerm + cov.trace().item<double>() + _traceCov - 2 * traceSqrt;
        }
    }
}

/// <summary>How a bootstrap interval is formed from the resampled statistics.</summary>
public enum BootstrapInterval
{
    /// <summary>Normal: the estimate ± z_{(1+level)/2} · the standard deviation of the resampled statistics (symmetric; ignores a shift of the resamples).</summary>
    Normal,

    /// <summary>Percentile: the (1 − level)/2 and (1 + level)/2 quantiles of the resampled statistics.</summary>
    Percentile,
}
