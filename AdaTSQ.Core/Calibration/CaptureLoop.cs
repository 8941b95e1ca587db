using System.Diagnostics;
using AdaTSQ.Abstractions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;

namespace AdaTSQ.Calibration;

/// <summary>
/// The capture loop every calibrator shares: attach a <see cref="LayerStatisticsCollector"/> to the
/// layers, run each item of the source under no-grad, detach (also on failure or cancellation), and
/// hand back the statistics. A calibrator decides only how each call is weighted (the collector's
/// step weight); this loop is the same for all of them.
/// </summary>
public static class CaptureLoop
{
    /// <summary>Runs every item of <paramref name="source"/> with <paramref name="collector"/> attached to <paramref name="layers"/>.</summary>
    /// <exception cref="CalibrationException">No layers, or an empty source.</exception>
    /// <exception cref="OperationCanceledException">Cancelled between items (the observers are detached, the statistics freed).</exception>
    public static CalibrationResult Run(IReadOnlyList<IQuantizableLayer> layers, ICalibrationSource source, LayerStatisticsCollector collector,
        IProgress<QuantizationProgress>? progress, ILogger? logger, CancellationToken cancellationToken)
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
            logger ??= NullLogger.Instance;
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
