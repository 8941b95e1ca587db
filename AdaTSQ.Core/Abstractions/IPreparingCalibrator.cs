namespace AdaTSQ.Abstractions;

/// <summary>
/// A calibrator that needs to see every layer once, on the full-precision model, before it is asked
/// to calibrate subsets of them (as block-by-block calibration does) — e.g. to estimate temporal
/// Fisher information once for the whole model.
/// </summary>
public interface IPreparingCalibrator
{
    /// <summary>Prepares for calibrating <paramref name="layers"/>; called once, before any quantization.</summary>
    void Prepare(IReadOnlyList<IQuantizableLayer> layers, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken);
}
