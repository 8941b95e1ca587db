using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Metrics;

/// <summary>
/// Per-image fidelity of a quantized model's output against the full-precision one (same seeds):
/// MSE, PSNR and SSIM over batches <c>[N, C, H, W]</c>. Images are compared in their own value range,
/// given as <c>dataRange</c> (2 for images in [−1, 1], 255 for bytes).
/// </summary>
public static class ImageMetrics
{
    /// <summary>Mean squared error per image <c>[N]</c> (float64).</summary>
    public static Tensor MsePerImage(Tensor a, Tensor b)
    {
        CheckPair(a, b);
        using var scope = torch.NewDisposeScope();
        var d = a.to(ScalarType.Float64) - b.to(ScalarType.Float64);
        return d.pow(2).reshape(a.shape[0], -1).mean([1]).MoveToOuterDisposeScope();
    }

    /// <summary>Mean over images of the per-image MSE.</summary>
    public static double Mse(Tensor a, Tensor b)
    {
        using var m = MsePerImage(a, b);
        using var mean = m.mean();
        return mean.item<double>();
    }

    /// <summary>
    /// Mean over images of PSNR = 10·log10(range² / MSE) in dB; identical images give +∞ (and so does
    /// the mean when any image pair is identical).
    /// </summary>
    public static double Psnr(Tensor a, Tensor b, double dataRange = 2.0) => PsnrPerImage(a, b, dataRange).Average();

    /// <summary>PSNR = 10·log10(range² / MSE) in dB of each image pair (+∞ for identical images), in batch order.</summary>
    public static double[] PsnrPerImage(Tensor a, Tensor b, double dataRange = 2.0)
    {
        using var m = MsePerImage(a, b);
        var mse = m.data<double>().ToArray();
        return mse.Select(v => v == 0 ? double.PositiveInfinity : 10 * Math.Log10(dataRange * dataRange / v)).ToArray();
    }

    /// <summary>
    /// Half-width of the normal-approximation 95 % confidence interval of the mean of <paramref name="values"/>
    /// (1.96 · sample standard deviation / √n); NaN for fewer than two values or any non-finite value.
    /// </summary>
    public static double MeanConfidence95(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count < 2 || values.Any(v => !double.IsFinite(v))) return double.NaN;
        double mean = values.Average();
        double variance = values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1);
        return 1.96 * Math.Sqrt(variance / values.Count);
    }

    /// <summary>
    /// Mean SSIM (Wang et al. 2004) over images: the mean of <see cref="SsimPerImage"/> (all images have the
    /// same size, so this is also the mean over every window position of the batch).
    /// </summary>
    public static double Ssim(Tensor a, Tensor b, double dataRange = 2.0) => SsimPerImage(a, b, dataRange).Average();

    /// <summary>
    /// SSIM (Wang et al. 2004) of each image pair, in batch order: 11×11 Gaussian window (σ = 1.5),
    /// K1 = 0.01, K2 = 0.03, computed per channel over the valid window positions and averaged over
    /// positions and channels. Images must be at least 11×11.
    /// </summary>
    public static double[] SsimPerImage(Tensor a, Tensor b, double dataRange = 2.0)
    {
        CheckPair(a, b);
        if (a.Dimensions != 4 || a.shape[2] < 11 || a.shape[3] < 11)
            throw new ArgumentException($"SSIM needs images [N, C, H, W] of at least 11×11, got [{string.Join(", ", a.shape)}].");
        using var scope = torch.NewDisposeScope();
        long c = a.shape[1];
        var x = a.to(ScalarType.Float64);
        var y = b.to(ScalarType.Float64);
        var g1 = torch.tensor(Enumerable.Range(-5, 11).Select(i => Math.Exp(-i * i / (2 * 1.5 * 1.5))).ToArray(), dtype: ScalarType.Float64, device: a.device);
        g1 = g1 / g1.sum();
        var window = g1.outer(g1).expand(c, 1, 11, 11).contiguous();
        Tensor Filter(Tensor t) => nn.functional.conv2d(t, window, groups: c);
        var mx = Filter(x);
        var my = Filter(y);
        var sxx = Filter(x * x) - mx * mx;
        var syy = Filter(y * y) - my * my;
        var sxy = Filter(x * y) - mx * my;
        double c1 = Math.Pow(0.01 * dataRange, 2), c2 = Math.Pow(0.03 * dataRange, 2);
        var map = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2));
        return map.mean([1, 2, 3]).cpu().data<double>().ToArray();
    }

    /// <summary>MSE between two trajectories step by step (same steps, same seeds): one value per step.</summary>
    public static double[] TrajectoryMse(IReadOnlyList<Tensor> reference, IReadOnlyList<Tensor> candidate)
    {
        if (reference.Count != candidate.Count)
            throw new ArgumentException($"trajectories have {reference.Count} and {candidate.Count} steps; they must match.");
        return reference.Zip(candidate, Mse).ToArray();
    }

    private static void CheckPair(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"images to compare have shapes [{string.Join(", ", a.shape)}] and [{string.Join(", ", b.shape)}]; they must match.");
        if (a.Dimensions < 1 || a.shape[0] == 0) throw new ArgumentException("there are no images to compare.");
    }
}
