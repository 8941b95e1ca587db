using AdaTSQ.Calibration;

namespace AdaTSQ.Abstractions;

/// <summary>
/// Collects per-layer statistics over calibration data and timesteps: input ranges, per-channel
/// maxima, and (for Hessian-based quantizers) the weighted second moment Σ α·x·xᵀ of each layer's
/// inputs. Implementations differ in how they weight the data of each timestep (uniformly, or by
/// temporal Fisher information as AdaTSQ does).
/// </summary>
public interface ICalibrator
{
    /// <summary>A short name for logs and reports.</summary>
    string Name { get; }

    /// <summary>
    /// Runs every item of <paramref name="source"/> with observers on <paramref name="layers"/> and
    /// returns their statistics (the caller disposes the result).
    /// </summary>
    /// <exception cref="CalibrationException">The source is empty, or a layer saw no input.</exception>
    CalibrationResult Calibrate(IReadOnlyList<IQuantizableLayer> layers, ICalibrationSource source, CalibrationRequirements requirements,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default);
}
