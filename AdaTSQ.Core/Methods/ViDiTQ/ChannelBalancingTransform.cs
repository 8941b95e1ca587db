using AdaTSQ.Calibration;
using AdaTSQ.Methods.QuaRot;
using AdaTSQ.Methods.SmoothQuant;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// ViDiT-Q's static–dynamic channel balancing (Zhao et al., ICLR 2025, arXiv 2406.02540). The static part: activation
/// channel ranges of a diffusion transformer change over the sampling steps, so the smoothing factors
/// <c>s_{g,j} = max|X_j|^α / max|W_j|^(1−α)</c> are computed per group g of sampling steps from that group's channel
/// maxima (<see cref="StepGroupMaxima"/>); each group gets its own quantized weight <c>Q(W·diag(s_g)·Rᵀ)</c>
/// (<see cref="QuantLinear.SetStepInputSmoothing"/>), as in ViDiT-Q's code, whose weight quantizer keeps one set of
/// parameters per time range. The dynamic part: per-token and per-sample outliers that no fixed factor can follow are
/// spread over all channels by a Hadamard rotation R after the smoothing (QuaRot's, <see cref="QuaRotTransform"/>).
/// A quantized call at a step of group g computes <c>Q((x / s_g)·Rᵀ) · Q(W·diag(s_g)·Rᵀ)ᵀ + b</c>, equal to <c>x·Wᵀ + b</c>
/// in exact arithmetic; calls outside every calibrated group use factors from all steps (SmoothQuant's). Only layers with
/// quantized activations are balanced. Per-group factors need dynamic activations (ViDiT-Q's per-token quantization).
/// </summary>
public sealed class ChannelBalancingTransform : ILayerTransform
{
    private readonly QuaRotTransform? _rotation;

    /// <summary>Creates the transform with <paramref name="options"/> (defaults: see <see cref="ViDiTQOptions"/>).</summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public ChannelBalancingTransform(ViDiTQOptions? options = null)
    {
        Options = options ?? new ViDiTQOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        _rotation = Options.Rotation is null ? null : new QuaRotTransform(Options.Rotation);
    }

    /// <summary>The options.</summary>
    public ViDiTQOptions Options { get; }

    /// <inheritdoc />
    public string Name => "ViDiT-Q";

    /// <inheritdoc />
    public bool SetsInputSmoothing => true;

    /// <inheritdoc />
    public bool SetsInputRotation => _rotation is not null;

    /// <inheritdoc />
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) =>
        new() { PerStepChannelExtremes = rangesPerTimestepGroup || Options.TimestepGroups > 1 };

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData)
    {
        var problems = Options.FindProblems().ToList();
        if (!hasCalibrationData) problems.Add("UseViDiTQ needs calibration data (per-channel input maxima per step): call CalibrationData(...).");
        return problems;
    }

    /// <inheritdoc />
    /// <exception cref="CalibrationException">The layer saw no input during calibration.</exception>
    /// <exception cref="NotSupportedException">Per-group factors with a static activation spec (its calibrated range would belong to one smoothing).</exception>
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(configs);
        if (!configs.Any(c => c.Activation.IsEnabled)) return null;
        if (statistics is not { HasData: true, ChannelAbsMax: not null })
            throw new CalibrationException($"layer '{layer.LayerName}': ViDiT-Q needs the per-channel input maxima from calibration, but the layer saw no input.");
        if (Options.TimestepGroups > 1 && configs.FirstOrDefault(c => c.Activation is { IsEnabled: true, Dynamic: false }) is { } staticConfig)
            throw new NotSupportedException($"layer '{layer.LayerName}': ViDiT-Q's smoothing per timestep group needs dynamic activations, but {staticConfig} quantizes them statically; use dynamic per-token activations (ViDiT-Q's) or TimestepGroups = 1.");

        using (var factors = SmoothQuantTransform.Factors(layer.Weight, statistics.ChannelAbsMax, Options.Alpha))
            layer.SetInputSmoothing(factors);
        foreach (var (first, last, absMax) in StepGroupMaxima.Compute(statistics, Options.TimestepGroups))
            using (absMax)
            using (var groupFactors = SmoothQuantTransform.Factors(layer.Weight, absMax, Options.Alpha))
                layer.SetStepInputSmoothing(groupFactors, first, last);

        var smoothed = statistics.Smoothed(layer.InputSmoothing!);
        if (_rotation?.Apply(layer, configs, smoothed) is not { } rotated) return smoothed;
        smoothed.Dispose();
        return rotated;
    }
}
