using AdaTSQ.Calibration;
using AdaTSQ.Quantization;

namespace AdaTSQ.Pipeline;

/// <summary>
/// A method's change to a layer before its weight is quantized — SmoothQuant's per-channel smoothing,
/// later rotations — made from the layer's calibration statistics. The quantize stage applies every
/// transform of the plan, in the order they were added, to each layer before quantizing it; a transform
/// returns the statistics of the transformed inputs so that the quantizer and the static ranges see
/// what the layer will see. Plug one in with <see cref="QuantizationBuilder.AddLayerTransform"/>.
/// </summary>
public interface ILayerTransform
{
    /// <summary>A short name for logs and reports.</summary>
    string Name { get; }

    /// <summary>
    /// What the transform needs from calibration, given whether the plan keeps static activation ranges per
    /// timestep group (<paramref name="rangesPerTimestepGroup"/>: a transform that changes the input
    /// distribution then needs the per-step channel extremes to recompute them).
    /// </summary>
    CalibrationRequirements Requirements(bool rangesPerTimestepGroup);

    /// <summary>
    /// Whether the transform sets the layers' input smoothing factors (<see cref="QuantLinear.SetInputSmoothing"/>), as
    /// SmoothQuant and SVDQuant do. A layer has one set of factors, so <see cref="QuantizationBuilder.Build"/> refuses a plan
    /// with two such transforms. Default: false.
    /// </summary>
    bool SetsInputSmoothing => false;

    /// <summary>
    /// Whether the transform sets the layers' input rotation (<see cref="QuantLinear.SetInputRotation"/>), as QuaRot does.
    /// A call smooths, then rotates, so <see cref="QuantizationBuilder.Build"/> refuses a smoothing transform added after
    /// a rotating one. Default: false.
    /// </summary>
    bool SetsInputRotation => false;

    /// <summary>
    /// Whether the transform sets a low-rank branch (<see cref="QuantLinear.SetLowRankBranch"/>), as SVDQuant does. The
    /// branch is made in the smoothed, unrotated input space, so <see cref="QuantizationBuilder.Build"/> refuses a plan
    /// that also rotates. Default: false.
    /// </summary>
    bool SetsLowRankBranch => false;

    /// <summary>Configuration problems (empty when none); <paramref name="hasCalibrationData"/> says whether the plan has data.</summary>
    IReadOnlyList<string> FindProblems(bool hasCalibrationData);

    /// <summary>
    /// Transforms <paramref name="layer"/> (whose configs are <paramref name="configs"/>) using its calibration
    /// <paramref name="statistics"/>. Returns the statistics of the transformed inputs (a new object the caller
    /// disposes), or null when the layer's inputs are unchanged (the layer itself may have changed, e.g. SVDQuant's
    /// low-rank branch without smoothing).
    /// </summary>
    LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics);
}
