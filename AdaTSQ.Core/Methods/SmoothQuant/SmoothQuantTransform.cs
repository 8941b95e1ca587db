using AdaTSQ.Calibration;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.SmoothQuant;

/// <summary>
/// SmoothQuant (Xiao et al., ICML 2023, arXiv 2211.10438): moves activation outliers into the weights with a
/// per-input-channel factor <c>s_j = max|X_j|^α / max|W_j|^(1−α)</c> (both maxima clamped to ≥ 1e-5; X from
/// calibration): the layer's inputs are divided by s and its weight columns multiplied by s, so the float output
/// is unchanged while the activations are easier to quantize. The factors are kept as a per-channel input scale in
/// the <see cref="QuantLinear"/> (one elementwise multiply per call; folding them into the preceding operation — for
/// a DiT, the adaLN modulation — is not done). Only layers with quantized activations are smoothed.
/// </summary>
public sealed class SmoothQuantTransform : ILayerTransform
{
    /// <summary>Creates the transform with migration strength <paramref name="alpha"/> (the paper's default 0.5).</summary>
    public SmoothQuantTransform(double alpha = 0.5)
    {
        Alpha = alpha;
    }

    /// <summary>Migration strength α ∈ [0, 1]: 0 leaves activations as they are, 1 moves all of their range into the weights.</summary>
    public double Alpha { get; }

    /// <inheritdoc />
    public string Name => "SmoothQuant";

    /// <inheritdoc />
    public bool SetsInputSmoothing => true;

    /// <inheritdoc />
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) =>
        rangesPerTimestepGroup ? new CalibrationRequirements { PerStepChannelExtremes = true } : CalibrationRequirements.None;

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData)
    {
        var problems = new List<string>();
        if (!(Alpha >= 0 && Alpha <= 1)) problems.Add($"SmoothQuant α {Alpha} must be in [0, 1].");
        if (!hasCalibrationData) problems.Add("SmoothActivations needs calibration data (per-channel input maxima): call CalibrationData(...).");
        return problems;
    }

    /// <inheritdoc />
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (!configs.Any(c => c.Activation.IsEnabled)) return null;
        if (statistics is not { HasData: true, ChannelAbsMax: not null })
            throw new CalibrationException($"layer '{layer.LayerName}': SmoothQuant needs the per-channel input maxima from calibration, but the layer saw no input.");
        using var factors = Factors(layer.Weight, statistics.ChannelAbsMax, Alpha);
        layer.SetInputSmoothing(factors);
        return statistics.Smoothed(factors);
    }

    /// <summary>s_j = max|X_j|^α / max|W_j|^(1−α) for a weight <c>[out, in]</c> and input maxima <c>[in]</c>; float32 <c>[in]</c>.</summary>
    public static Tensor Factors(Tensor weight, Tensor channelAbsMax, double alpha)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = channelAbsMax.to(ScalarType.Float64, weight.device).clamp_min(1e-5);
        var w = weight.detach().abs().amax([0]).to(ScalarType.Float64).clamp_min(1e-5);
        return (x.pow(alpha) / w.pow(1 - alpha)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
