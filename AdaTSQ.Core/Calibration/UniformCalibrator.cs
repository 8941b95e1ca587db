using AdaTSQ.Abstractions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace AdaTSQ.Calibration;

/// <summary>
/// The plain calibrator: every calibration call of every timestep counts the same (α = 1). It is
/// the baseline the temporally weighted (Fisher) calibrator is compared with.
/// </summary>
public sealed class UniformCalibrator : ICalibrator
{
    private readonly ILogger _logger;

    /// <summary>Creates the calibrator.</summary>
    public UniformCalibrator(ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public string Name => "uniform";

    /// <inheritdoc />
    public CalibrationResult Calibrate(IReadOnlyList<IQuantizableLayer> layers, ICalibrationSource source, CalibrationRequirements requirements,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        CaptureLoop.Run(layers, source, new LayerStatisticsCollector(layers, requirements), progress, _logger, cancellationToken);
}
