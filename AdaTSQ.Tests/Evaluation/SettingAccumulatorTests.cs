using AdaTSQ.Evaluation;
using AdaTSQ.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Evaluation;

public class SettingAccumulatorTests
{
    /// <summary>A stand-in judge: class = (number of positive pixels) mod 10.</summary>
    private static long[] Classify(Tensor images)
    {
        using var positive = images.gt(0).reshape(images.shape[0], -1).sum(1);
        return positive.data<long>().ToArray().Select(p => p % 10).ToArray();
    }

    /// <summary>A stand-in feature network: the mean of each of 4 horizontal bands and the image's std (5 features).</summary>
    private static float[] Features(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        long n = images.shape[0];
        var bands = images.reshape(n, 4, -1).mean([2]);
        var f = torch.cat([bands, images.reshape(n, -1).std(1).unsqueeze(1)], 1).to(ScalarType.Float32).contiguous();
        return f.data<float>().ToArray();
    }

    private static readonly ImageScorers Scorers = new() { Classify = Classify, Features = Features, FeatureDimension = 5 };

    [Test]
    public void FedInChunksItGivesTheOneShotFigures()
    {
        using var reference = TestTensors.Randn(1, 90, 1, 12, 12).clamp(-1, 1);
        using var noise = TestTensors.Randn(2, 90, 1, 12, 12);
        using var generated = (reference + noise * 0.1).clamp(-1, 1);
        var labels = Enumerable.Range(0, 90).Select(i => (long)(i % 10)).ToArray();
        var acc = new SettingAccumulator("test", Scorers);
        foreach (var (s, e) in new[] { (0, 32), (32, 64), (64, 90) })
            acc.Add(generated[s..e], reference[s..e], labels[s..e]);

        Assert.That(acc.Count, Is.EqualTo(90));
        Assert.That(acc.Psnr, Is.EqualTo(ImageMetrics.PsnrPerImage(generated, reference)).Within(1e-9));
        Assert.That(acc.Ssim, Is.EqualTo(ImageMetrics.SsimPerImage(generated, reference)).Within(1e-9));
        var predicted = Classify(generated);
        Assert.That(acc.Correct, Is.EqualTo(predicted.Select((p, i) => p == labels[i]).ToArray()));

        using var realFeatures = torch.tensor(Features(TestTensors.Randn(3, 300, 1, 12, 12)), [300, 5]);
        var realStats = FeatureStatistics.FromFeatures(BootstrapTests.ToArray(realFeatures), "real");
        using var allFeatures = torch.tensor(Features(generated), [90, 5]);
        double fid = FrechetDistance.Compute(FeatureStatistics.FromFeatures(BootstrapTests.ToArray(allFeatures)), realStats);

        var summary = acc.Summarize(realStats, resamples: 200, seed: 1);
        Assert.That(summary.Count, Is.EqualTo(90));
        Assert.That(summary.Psnr.Estimate, Is.EqualTo(ImageMetrics.Psnr(generated, reference)).Within(1e-9));
        Assert.That(summary.Ssim!.Value.Estimate, Is.EqualTo(ImageMetrics.Ssim(generated, reference)).Within(1e-9));
        Assert.That(summary.Accuracy!.Value.Estimate, Is.EqualTo(ClassFidelityOf(predicted, labels)).Within(1e-12));
        Assert.That(summary.Fid!.Value.Estimate, Is.EqualTo(fid).Within(1e-6 * Math.Max(1, fid)));
        Assert.That(summary.FidReferenceCount, Is.EqualTo(300));
        Assert.That(summary.Psnr.Lower, Is.LessThan(summary.Psnr.Estimate));
    }

    [Test]
    public void TheReferenceRowHasInfinitePsnrUnitSsimAndNoPsnrInterval()
    {
        using var x = TestTensors.Randn(4, 20, 1, 12, 12).clamp(-1, 1);
        var acc = new SettingAccumulator("FP", new ImageScorers());
        acc.Add(x, x, Enumerable.Repeat(0L, 20).ToArray());
        var s = acc.Summarize();
        Assert.That(s.Psnr.Estimate, Is.EqualTo(double.PositiveInfinity));
        Assert.That(s.Psnr.Lower, Is.NaN);
        Assert.That(s.Ssim!.Value.Estimate, Is.EqualTo(1.0).Within(1e-12));
        Assert.That(s.Accuracy, Is.Null);
        Assert.That(s.Fid, Is.Null);
    }

    [Test]
    public void AFailingScorerLeavesTheAccumulatorUnchanged()
    {
        using var x = TestTensors.Randn(5, 4, 1, 12, 12);
        var acc = new SettingAccumulator("bad", new ImageScorers { Classify = _ => [1, 2] });
        Assert.Throws<InvalidOperationException>(() => acc.Add(x, x, [0, 1, 2, 3]));
        Assert.That(acc.Count, Is.Zero);
        Assert.Throws<ArgumentException>(() => acc.Add(x, x, [0, 1]));
    }

    private static double ClassFidelityOf(long[] predicted, long[] labels) => predicted.Where((p, i) => p == labels[i]).Count() / (double)labels.Length;
}
