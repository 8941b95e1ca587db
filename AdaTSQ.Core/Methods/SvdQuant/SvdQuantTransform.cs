using AdaTSQ.Calibration;
using AdaTSQ.Methods.SmoothQuant;
using AdaTSQ.Numerics;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.SvdQuant;

/// <summary>
/// SVDQuant (Li et al., "SVDQuant: Absorbing Outliers by Low-Rank Components for 4-Bit Diffusion Models", ICLR 2025,
/// arXiv 2411.05007). Per layer: smooth with per-input-channel factors λ (activation outliers move into the weight:
/// <c>W̃ = W · diag(λ)</c>, <c>x̃ = x / λ</c>), with the migration strength α searched per layer on the calibration
/// statistics (<see cref="MigrationStrengthSearch"/>); take the top-r SVD of W̃ as a full-precision branch
/// <c>L1 · L2</c> (<c>L1 = U·√S</c>, <c>L2 = √S·Vᵀ</c>); the weight versions are then quantized from the residual
/// <c>R = W̃ − L1 · L2</c> (<see cref="QuantLinear.SmoothedWeight"/>) by the plan's quantizer — RTN, or GPTQ on the Hessian
/// of x̃, which this transform returns as the smoothed statistics. A quantized call computes
/// <c>Q(x̃) · Q(R)ᵀ + x̃ · L2ᵀ · L1ᵀ + b</c>; full-precision calls are unchanged. Usable on one layer without a model:
/// <see cref="Apply"/> needs only the layer and its <see cref="LayerStatistics"/> (with second moments).
/// </summary>
public sealed class SvdQuantTransform : ILayerTransform
{
    /// <summary>Creates the transform.</summary>
    /// <exception cref="ArgumentException">The options are invalid (every problem listed).</exception>
    public SvdQuantTransform(SvdQuantOptions? options = null)
    {
        Options = options ?? new SvdQuantOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new ArgumentException(string.Join(" ", problems), nameof(options));
    }

    /// <summary>The options.</summary>
    public SvdQuantOptions Options { get; }

    /// <inheritdoc />
    public string Name => "SvdQuant";

    /// <inheritdoc />
    public bool SetsInputSmoothing => true;

    /// <inheritdoc />
    public bool SetsLowRankBranch => true;

    /// <inheritdoc />
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) =>
        rangesPerTimestepGroup ? CalibrationRequirements.SecondMoments with { PerStepChannelExtremes = true } : CalibrationRequirements.SecondMoments;

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData)
    {
        var problems = Options.FindProblems().ToList();
        if (!hasCalibrationData) problems.Add("UseSvdQuant needs calibration data (input maxima and second moments for its α search): call CalibrationData(...).");
        return problems;
    }

    /// <summary>
    /// Searches α for <paramref name="layer"/>, sets its smoothing (none when λ = 1 wins) and its low-rank branch, and
    /// returns the statistics of the smoothed inputs (null when unsmoothed). The search quantizes with the config of the
    /// fewest weight + activation bits among <paramref name="configs"/> (the hardest one; a layer has one λ for all of
    /// them). A layer whose configs are all full precision is left alone.
    /// </summary>
    /// <exception cref="LayerQuantizationException">The rank exceeds min(in, out), or the layer already has smoothing or a branch.</exception>
    /// <exception cref="CalibrationException">The layer has no calibration statistics with second moments.</exception>
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(configs);
        var hardest = configs.Where(c => c.Weight.IsEnabled || c.Activation.IsEnabled)
            .OrderBy(c => c.Weight.Bits + c.Activation.Bits).FirstOrDefault();
        if (hardest is null) return null;
        long maxRank = Math.Min(layer.InFeatures, layer.OutFeatures);
        if (Options.Rank > maxRank)
            throw new LayerQuantizationException(layer.LayerName, $"SvdQuant rank {Options.Rank} exceeds min(in, out) = {maxRank} of this {layer.OutFeatures}×{layer.InFeatures} layer.");
        if (layer.InputSmoothing is not null || layer.LowRank is not null)
            throw new LayerQuantizationException(layer.LayerName, "the layer already has input smoothing or a low-rank branch; SvdQuant sets its own.");
        if (statistics is null)
            throw new CalibrationException($"layer '{layer.LayerName}': SvdQuant needs calibration statistics, but the layer saw no input.");
        var choice = MigrationStrengthSearch.Run(layer.LayerName, layer.Weight, statistics, hardest.Weight, hardest.Activation, Options);
        using var factors = choice.Alpha is { } alpha ? SmoothQuantTransform.Factors(layer.Weight, statistics.ChannelAbsMax!, alpha) : null;
        if (factors is not null) layer.SetInputSmoothing(factors);
        if (Options.Rank > 0)
        {
            using var scope = torch.NewDisposeScope();
            using var smoothed = layer.SmoothedWeight();
            using var svd = Decompose(smoothed, Options);
            var root = svd.S.sqrt();
            layer.SetLowRankBranch(svd.U * root.unsqueeze(0), root.unsqueeze(1) * svd.Vh);
        }
        return factors is null ? null : statistics.Smoothed(factors);
    }

    /// <summary>The top-<see cref="SvdQuantOptions.Rank"/> SVD of <paramref name="smoothedWeight"/>, exact or randomized as the options say, in float64.</summary>
    internal static TruncatedSvd Decompose(Tensor smoothedWeight, SvdQuantOptions options) =>
        options.ExactSvd
            ? TruncatedSvd.Exact(smoothedWeight, options.Rank, ScalarType.Float64)
            : RandomizedSvd.Compute(smoothedWeight, options.Rank, options.Oversampling, options.PowerIterations, options.Seed, ScalarType.Float64);
}
