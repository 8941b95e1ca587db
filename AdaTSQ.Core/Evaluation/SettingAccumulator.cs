using AdaTSQ.Abstractions;
using AdaTSQ.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Evaluation;

/// <summary>
/// Streams the evaluation of one setting: fed batch by batch with generated images, the reference images of
/// the same noise (e.g. full precision) and the requested labels, it keeps only per-image scalars (PSNR,
/// SSIM, class correctness) and the generated images' feature rows; no image outlives <see cref="Add"/>.
/// The feature rows are the only state that grows beyond a few bytes per image: n × d float32, 2 KB per image
/// for 512-d ResNet-18 features (2 MB per 1,000 samples). <see cref="Summarize"/> then gives means with
/// intervals, bootstrap accuracy and bootstrap FID.
/// </summary>
public sealed class SettingAccumulator
{
    private readonly ImageScorers _scorers;
    private readonly List<double> _psnr = [];
    private readonly List<double> _ssim = [];
    private readonly List<bool> _correct = [];
    private readonly List<float[]> _features = [];

    /// <summary>Creates an empty accumulator for the setting <paramref name="name"/>.</summary>
    public SettingAccumulator(string name, ImageScorers? scorers = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        _scorers = scorers ?? new ImageScorers();
        if (_scorers.Features is not null && _scorers.FeatureDimension <= 0)
            throw new ArgumentException($"ImageScorers.FeatureDimension must be positive when Features is set, got {_scorers.FeatureDimension}.", nameof(scorers));
        Name = name;
    }

    /// <summary>The setting.</summary>
    public string Name { get; }

    /// <summary>Images added so far.</summary>
    public int Count => _psnr.Count;

    /// <summary>PSNR (dB) of every image against its reference, in sample order (+∞ for identical images).</summary>
    public IReadOnlyList<double> Psnr => _psnr;

    /// <summary>SSIM of every image against its reference, in sample order (empty when SSIM is off).</summary>
    public IReadOnlyList<double> Ssim => _ssim;

    /// <summary>Whether the classifier assigned each image its requested class, in sample order (empty without a classifier).</summary>
    public IReadOnlyList<bool> Correct => _correct;

    /// <summary>
    /// Adds one batch. <paramref name="generated"/> and <paramref name="reference"/> are <c>[n, C, H, W]</c> of
    /// equal shape (image i of both from the same noise); <paramref name="labels"/> the n requested classes.
    /// The tensors stay the caller's.
    /// </summary>
    public void Add(Tensor generated, Tensor reference, IReadOnlyList<long> labels)
    {
        ArgumentNullException.ThrowIfNull(generated);
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(labels);
        if (generated.Dimensions != 4) throw new ArgumentException($"generated images must be [n, C, H, W], got [{string.Join(", ", generated.shape)}].", nameof(generated));
        int n = checked((int)generated.shape[0]);
        if (labels.Count != n) throw new ArgumentException($"{labels.Count} labels for {n} images.", nameof(labels));
        // Compute everything first, then append: a failing scorer leaves the accumulator unchanged.
        var psnr = ImageMetrics.PsnrPerImage(generated, reference, _scorers.DataRange);
        var ssim = _scorers.Ssim ? ImageMetrics.SsimPerImage(generated, reference, _scorers.DataRange) : null;
        bool[]? correct = null;
        if (_scorers.Classify is { } classify)
        {
            var predicted = classify(generated);
            if (predicted.Length != n) throw new InvalidOperationException($"the classifier returned {predicted.Length} predictions for {n} images.");
            correct = predicted.Select((p, i) => p == labels[i]).ToArray();
        }
        float[]? features = null;
        if (_scorers.Features is { } featurize)
        {
            features = featurize(generated);
            if (features.Length != (long)n * _scorers.FeatureDimension)
                throw new InvalidOperationException($"the feature extractor returned {features.Length} values for {n} images of {_scorers.FeatureDimension} features.");
        }
        _psnr.AddRange(psnr);
        if (ssim is not null) _ssim.AddRange(ssim);
        if (correct is not null) _correct.AddRange(correct);
        if (features is not null) _features.Add(features);
    }

    /// <summary>The feature rows so far as a new <c>[n, d]</c> float32 tensor (the caller disposes it).</summary>
    /// <exception cref="InvalidOperationException">No feature extractor was given.</exception>
    public Tensor Features()
    {
        if (_scorers.Features is null) throw new InvalidOperationException($"setting {Name}: no feature extractor (ImageScorers.Features) was given.");
        var all = new float[(long)Count * _scorers.FeatureDimension];
        long offset = 0;
        foreach (var block in _features)
        {
            Array.Copy(block, 0, all, offset, block.Length);
            offset += block.Length;
        }
        return torch.tensor(all, [Count, _scorers.FeatureDimension], dtype: ScalarType.Float32);
    }

    /// <summary>
    /// Means with intervals: PSNR and SSIM (Student-t), accuracy (percentile bootstrap) and, with
    /// <paramref name="reference"/> statistics and features, FID (percentile bootstrap over the generated rows, the
    /// reference fixed). The same <paramref name="seed"/> for every setting makes their resamples pick the same
    /// sample indices. <paramref name="progress"/> follows the FID bootstrap, the only slow part.
    /// </summary>
    public SettingSummary Summarize(FeatureStatistics? reference = null, int resamples = Bootstrap.DefaultResamples, double level = 0.95, int seed = 0,
        IProgress<QuantizationProgress>? progress = null)
    {
        if (Count < 2) throw new InvalidOperationException($"setting {Name}: {Count} images evaluated; a summary needs at least 2.");
        var psnr = MeanInterval.Compute(_psnr, level);
        ConfidenceInterval? ssim = _scorers.Ssim ? MeanInterval.Compute(_ssim, level) : null;
        ConfidenceInterval? accuracy = _scorers.Classify is null ? null : Bootstrap.Proportion(_correct, resamples, level, seed);
        ConfidenceInterval? fid = null;
        if (reference is not null && _scorers.Features is not null)
        {
            using var features = Features();
            fid = Bootstrap.FrechetDistance(features, reference, resamples, level, seed, progress);
        }
        return new SettingSummary(Name, Count, psnr, ssim, accuracy, fid, fid is null ? 0 : reference!.Count);
    }
}
