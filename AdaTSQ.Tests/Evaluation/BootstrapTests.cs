using AdaTSQ.Evaluation;
using AdaTSQ.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Evaluation;

public class BootstrapTests
{
    private static double[] Normal(int n, double mu, double sigma, int seed)
    {
        var rng = new Random(seed);
        // Box–Muller from a seeded Random.
        return Enumerable.Range(0, n).Select(_ => mu + sigma * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble())).ToArray();
    }

    [Test]
    public void TheBootstrapIntervalOfANormalMeanCoversItAndHasTheTheoreticalWidth()
    {
        // n = 2000 draws of N(5, 2): the 95 % interval of the mean is x̄ ± 1.96·σ/√n, width 2·1.96·2/√2000 = 0.1753.
        const int n = 2000;
        const double mu = 5, sigma = 2;
        var values = Normal(n, mu, sigma, seed: 11);
        var ci = Bootstrap.Mean(values, resamples: 2000, seed: 3);
        Assert.That(ci.Estimate, Is.EqualTo(values.Average()).Within(1e-12));
        Assert.That(ci.Contains(mu), $"[{ci.Lower}, {ci.Upper}] covers μ = {mu}");
        double expected = 2 * 1.96 * sigma / Math.Sqrt(n);
        Assert.That(ci.Upper - ci.Lower, Is.EqualTo(expected).Within(0.1 * expected));
        Assert.That(ci.Lower, Is.LessThan(ci.Estimate));
        Assert.That(ci.Upper, Is.GreaterThan(ci.Estimate));
    }

    [Test]
    public void TheBootstrapCoversTheTrueMeanAboutNinetyFivePercentOfTheTime()
    {
        // 200 independent data sets of n = 100 from N(0, 1); 95 % intervals should miss in about 10 of them
        // (binomial sd ≈ 3); the percentile bootstrap is slightly narrow at n = 100, so allow 3–20 misses.
        int misses = 0;
        for (int k = 0; k < 200; k++)
            if (!Bootstrap.Mean(Normal(100, 0, 1, seed: 1000 + k), resamples: 500, seed: k).Contains(0)) misses++;
        Assert.That(misses, Is.InRange(3, 20));
    }

    [Test]
    public void TheSameSeedGivesTheSameIntervalAndAnotherSeedAnother()
    {
        var values = Normal(300, 0, 1, seed: 5);
        var a = Bootstrap.Mean(values, seed: 7);
        var b = Bootstrap.Mean(values, seed: 7);
        var c = Bootstrap.Mean(values, seed: 8);
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c.Lower, Is.Not.EqualTo(a.Lower));
        Assert.That(a.Method, Does.Contain("1000 resamples").And.Contain("seed 7"));
    }

    [Test]
    public void AProportionIntervalMatchesTheBinomialStandardError()
    {
        // 700 of 1000 correct: the normal interval is 0.7 ± 1.96·√(0.7·0.3/1000) = 0.7 ± 0.0284.
        var outcomes = Enumerable.Range(0, 1000).Select(i => i % 10 < 7).ToArray();
        var ci = Bootstrap.Proportion(outcomes, seed: 1);
        Assert.That(ci.Estimate, Is.EqualTo(0.7).Within(1e-12));
        Assert.That(ci.HalfWidth, Is.EqualTo(1.96 * Math.Sqrt(0.7 * 0.3 / 1000)).Within(0.004));
    }

    [Test]
    public void TheFidEstimateIsTheFrechetDistanceOfAllRowsAndItsIntervalIsSeeded()
    {
        using var real = TestTensors.Randn(1, 400, 6);
        using var generated = TestTensors.Randn(2, 150, 6) * 1.3 + 0.4;
        var realStats = FeatureStatistics.FromFeatures(ToArray(real));
        var expected = FrechetDistance.Compute(FeatureStatistics.FromFeatures(ToArray(generated)), realStats);
        var ci = Bootstrap.FrechetDistance(generated, realStats, resamples: 200, seed: 4);
        Assert.That(ci.Estimate, Is.EqualTo(expected).Within(1e-9 * Math.Max(1, expected)));
        Assert.That(ci.Lower, Is.LessThan(ci.Upper));
        Assert.That(ci.Estimate - ci.Lower, Is.EqualTo(ci.Upper - ci.Estimate).Within(1e-9), "the normal interval is symmetric");
        Assert.That(Bootstrap.FrechetDistance(generated, realStats, resamples: 200, seed: 4), Is.EqualTo(ci));
        var percentile = Bootstrap.FrechetDistance(generated, realStats, resamples: 200, seed: 4, interval: BootstrapInterval.Percentile);
        Assert.That(percentile.Estimate, Is.EqualTo(ci.Estimate));
        // Both come from the same 200 resamples: similar widths (the percentile one may be shifted up by FID's small-sample bias).
        Assert.That(percentile.Upper - percentile.Lower, Is.EqualTo(ci.Upper - ci.Lower).Within(0.5 * (ci.Upper - ci.Lower)));
    }

    [Test]
    public void BadArgumentsAreRefusedWithTheirValues()
    {
        Assert.Throws<ArgumentException>(() => Bootstrap.Mean([1.0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Bootstrap.Mean([1.0, 2.0], resamples: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Bootstrap.Mean([1.0, 2.0], level: 95));
    }

    internal static double[,] ToArray(Tensor t)
    {
        var flat = t.to(ScalarType.Float64).contiguous().data<double>().ToArray();
        var m = new double[t.shape[0], t.shape[1]];
        Buffer.BlockCopy(flat, 0, m, 0, flat.Length * sizeof(double));
        return m;
    }
}
