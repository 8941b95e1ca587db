using AdaTSQ.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Metrics;

public class MetricsTests
{
    [Test]
    public void IdenticalImagesHaveInfinitePsnrAndUnitSsim()
    {
        using var x = TestTensors.Randn(1, 3, 2, 16, 16).clamp(-1, 1);
        Assert.That(ImageMetrics.Mse(x, x), Is.Zero);
        Assert.That(ImageMetrics.Psnr(x, x), Is.EqualTo(double.PositiveInfinity));
        Assert.That(ImageMetrics.Ssim(x, x), Is.EqualTo(1.0).Within(1e-12));
    }

    [Test]
    public void PsnrOfAKnownErrorIsTheClosedForm()
    {
        // A constant error of 0.1 everywhere: MSE = 0.01, PSNR = 10·log10(2² / 0.01) = 26.0206 dB.
        using var x = TestTensors.Randn(2, 2, 1, 12, 12);
        using var y = x + 0.1;
        Assert.That(ImageMetrics.Mse(x, y), Is.EqualTo(0.01).Within(1e-7));
        Assert.That(ImageMetrics.Psnr(x, y, dataRange: 2), Is.EqualTo(10 * Math.Log10(4 / 0.01)).Within(1e-4));
        Assert.That(ImageMetrics.Psnr(x, y, dataRange: 255), Is.EqualTo(10 * Math.Log10(255.0 * 255 / 0.01)).Within(1e-4));
    }

    [Test]
    public void PsnrPerImageGivesEachPairsPsnrAndThePsnrIsTheirMean()
    {
        // Image i has a constant error of 0.1·(i + 1): PSNR_i = 10·log10(4 / (0.1·(i + 1))²).
        using var x = TestTensors.Randn(6, 3, 1, 8, 8);
        using var step = torch.tensor(new float[] { 0.1f, 0.2f, 0.3f }).reshape(3, 1, 1, 1);
        using var y = x + step;
        var perImage = ImageMetrics.PsnrPerImage(x, y);
        Assert.That(perImage, Has.Length.EqualTo(3));
        for (int i = 0; i < 3; i++)
            Assert.That(perImage[i], Is.EqualTo(10 * Math.Log10(4 / Math.Pow(0.1 * (i + 1), 2))).Within(1e-3));
        Assert.That(ImageMetrics.Psnr(x, y), Is.EqualTo(perImage.Average()).Within(1e-12));
    }

    [Test]
    public void TheConfidenceHalfWidthIsTheNormalApproximation()
    {
        // Values 1…4: mean 2.5, sample variance 5/3, half-width 1.96·sqrt(5/3 / 4).
        Assert.That(ImageMetrics.MeanConfidence95([1, 2, 3, 4]), Is.EqualTo(1.96 * Math.Sqrt(5.0 / 3 / 4)).Within(1e-12));
        Assert.That(ImageMetrics.MeanConfidence95([5, 5, 5]), Is.Zero);
        Assert.That(ImageMetrics.MeanConfidence95([1]), Is.NaN);
        Assert.That(ImageMetrics.MeanConfidence95([1, double.PositiveInfinity]), Is.NaN);
    }

    [Test]
    public void SsimFallsWithNoiseAndIsSymmetric()
    {
        using var x = (TestTensors.Randn(3, 1, 1, 28, 28) * 0.5).clamp(-1, 1);
        using var slightly = x + TestTensors.Randn(4, 1, 1, 28, 28) * 0.05;
        using var heavily = x + TestTensors.Randn(5, 1, 1, 28, 28) * 0.5;
        double s1 = ImageMetrics.Ssim(x, slightly), s2 = ImageMetrics.Ssim(x, heavily);
        Assert.That(s1, Is.LessThan(1).And.GreaterThan(s2));
        Assert.That(s2, Is.LessThan(0.7));
        Assert.That(ImageMetrics.Ssim(heavily, x), Is.EqualTo(s2).Within(1e-12));
    }

    [Test]
    public void TrajectoryMseIsPerStep()
    {
        using var a = torch.zeros(1, 1, 2, 2);
        using var b = torch.ones(1, 1, 2, 2);
        using var c = torch.full(1, 1, 2, 2, 3f);
        Assert.That(ImageMetrics.TrajectoryMse([a, b], [b, c]), Is.EqualTo(new[] { 1.0, 4.0 }));
        Assert.Throws<ArgumentException>(() => ImageMetrics.TrajectoryMse([a], [a, b]));
        Assert.Throws<ArgumentException>(() => ImageMetrics.Mse(a, torch.zeros(1, 1, 2, 3)));
    }

    private static double[,] Gaussian(int n, int d, double[] mean, double[] std, int seed)
    {
        var rng = new Random(seed);
        var f = new double[n, d];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
            {
                double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
                f[i, j] = mean[j] + std[j] * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            }
        return f;
    }

    [Test]
    public void FrechetDistanceOfIdenticalSetsIsZero()
    {
        var s = FeatureStatistics.FromFeatures(Gaussian(500, 4, [0, 1, 2, 3], [1, 2, 0.5, 1], 1));
        Assert.That(FrechetDistance.Compute(s, s), Is.EqualTo(0).Within(1e-9));
    }

    [Test]
    public void FrechetDistanceMatchesTheClosedFormForShiftedAndScaledGaussians()
    {
        // Diagonal covariances: d² = ‖μ1 − μ2‖² + Σ (σ1 − σ2)².
        var a = new FeatureStatistics([0, 0, 0], new double[,] { { 1, 0, 0 }, { 0, 4, 0 }, { 0, 0, 9 } }, 100);
        var b = new FeatureStatistics([1, 2, 0], new double[,] { { 4, 0, 0 }, { 0, 4, 0 }, { 0, 0, 1 } }, 100);
        Assert.That(FrechetDistance.Compute(a, b), Is.EqualTo(1 + 4 + 1 + 0 + 4).Within(1e-9));
        // Sampled sets approach the closed form.
        var sa = FeatureStatistics.FromFeatures(Gaussian(20000, 2, [0, 0], [1, 1], 2));
        var sb = FeatureStatistics.FromFeatures(Gaussian(20000, 2, [3, 0], [1, 1], 3));
        Assert.That(FrechetDistance.Compute(sa, sb), Is.EqualTo(9).Within(0.2));
    }

    [Test]
    public void StatisticsRoundTripThroughAFile()
    {
        var s = FeatureStatistics.FromFeatures(Gaussian(50, 3, [1, 2, 3], [1, 1, 1], 4), "test");
        var path = Path.Combine(Path.GetTempPath(), $"stats-{Guid.NewGuid():N}.safetensors");
        try
        {
            s.Save(path);
            var back = FeatureStatistics.Load(path);
            Assert.That(back.Mean, Is.EqualTo(s.Mean));
            Assert.That(back.Covariance, Is.EqualTo(s.Covariance));
            Assert.That((back.Count, back.Source), Is.EqualTo((50, "test")));
        }
        finally { File.Delete(path); }
    }
}
