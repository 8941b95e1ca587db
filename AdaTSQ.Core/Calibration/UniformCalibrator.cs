using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;

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
    public CalibrationResult Calibrate(IReadOnlyList<QuantLinear> layers, ICalibrationSource source, CalibrationRequirements requirements,
        IProgress<QuantizationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        CalibrationRun.Execute(layers, source, new LayerStatisticsCollector(layers, requirements), progress, _logger, cancellationToken);
}

/// <summary>The loop every calibrator shares: attach, run each item, detach, check.</summary>
internal static class CalibrationRun
{
    public static CalibrationResult Execute(IReadOnlyList<QuantLinear> layers, ICalibrationSource source, LayerStatisticsCollector collector,
        IProgress<QuantizationProgress>? progress, ILogger logger, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (layers.Count == 0) throw new CalibrationException("there are no layers to calibrate.");
        if (source.Count <= 0) throw new CalibrationException($"calibration data is empty ({source.GetType().Name} has {source.Count} items): give at least one calibration input.");
        var watch = Stopwatch.StartNew();
        CalibrationResult? result = null;
        try
        {
            using (collector.Attach())
            using (torch.no_grad())
            {
                for (int i = 0; i < source.Count; i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    source.Run(i, cancellationToken);
                    progress?.Report(new QuantizationProgress("calibrate", i + 1, source.Count, $"item {i + 1}"));
                }
            }
            result = collector.ToResult(source.Count, watch.Elapsed);
            logger.LogInformation("Calibrated {Layers} layers on {Items} items in {Seconds:F1} s", layers.Count, source.Count, watch.Elapsed.TotalSeconds);
            var idle = result.LayersWithoutData;
            if (idle.Count > 0)
                logger.LogWarning("{Count} layer(s) saw no calibration input: {Layers}", idle.Count, string.Join(", ", idle));
            return result;
        }
        catch
        {
            (result ?? collector.ToResult(0, watch.Elapsed)).Dispose();
            throw;
        }
    }
}
