using AdaTSQ.Calibration;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// PTQ4DiT's step of the quantize stage. The balancing itself is already folded into the model's parameters before the
/// capture (<see cref="Ptq4DitCalibrator"/>), so the layers and their statistics need no change here: this transform checks
/// that the fold ran before any layer is quantized — it does not when the statistics were loaded from a calibration cache,
/// which PTQ4DiT cannot use — and reports the plan's problems at <c>Build()</c>. As an <see cref="IModelChangingTransform"/>
/// it undoes the fold when the result is restored (<see cref="QuantizationResult.Restore"/>) or the run fails.
/// </summary>
public sealed class Ptq4DitTransform : ILayerTransform, IModelChangingTransform
{
    private readonly Ptq4DitBalancing _balancing;

    /// <summary>Creates the step for <paramref name="balancing"/>.</summary>
    public Ptq4DitTransform(Ptq4DitBalancing balancing)
    {
        _balancing = balancing ?? throw new ArgumentNullException(nameof(balancing));
    }

    /// <inheritdoc />
    public string Name => "PTQ4DiT";

    /// <inheritdoc />
    public bool HasChangedModel => _balancing.IsApplied;

    /// <inheritdoc />
    public void RevertModelChanges()
    {
        if (_balancing.IsApplied) _balancing.Undo();
    }

    /// <inheritdoc />
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) => CalibrationRequirements.None;

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData)
    {
        var problems = _balancing.Options.FindProblems().ToList();
        if (!hasCalibrationData) problems.Add("UsePtq4Dit needs calibration data (the per-step input saliences of the full-precision model): call CalibrationData(...).");
        return problems;
    }

    /// <inheritdoc />
    /// <exception cref="CalibrationException">The balancing was not folded before this layer is quantized.</exception>
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (!_balancing.IsApplied)
            throw new CalibrationException($"layer '{layer.LayerName}': PTQ4DiT's balancing was not folded into the model before quantization (it runs in its calibrator's first capture; statistics loaded from CacheCalibration skip that): do not combine UsePtq4Dit with CacheCalibration, or with a calibrator set after it.");
        return null;
    }
}
