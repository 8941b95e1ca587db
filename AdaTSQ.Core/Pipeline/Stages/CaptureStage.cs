using System.Text;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using Microsoft.Extensions.Logging;

namespace AdaTSQ.Pipeline.Stages;

/// <summary>
/// Stage 2 of a run (after the model's layers are swapped): run the calibration data through the model with
/// the calibrator's observers on the layers and collect their <see cref="LayerStatistics"/>. Before the first
/// capture, a calibrator that must see the full-precision model first (AdaTSQ's temporal Fisher,
/// <see cref="IPreparingCalibrator"/>) is prepared. Input: the layers of one block (or all). Output: a
/// <see cref="CalibrationResult"/> the caller disposes.
/// <para>
/// With a cache directory, each block's statistics are saved there (<c>calibration-{block}.safetensors</c>,
/// see <see cref="CalibrationFile"/>) and a later run whose plan has the same <see cref="Fingerprint"/>
/// (calibrator, source type and item count, what is collected, the block's layers and widths) loads them
/// instead of capturing. The fingerprint cannot see the calibration data themselves: delete the cache when
/// they change.
/// </para>
/// </summary>
public sealed class CaptureStage
{
    private readonly ICalibrator _calibrator;
    private readonly ICalibrationSource _source;
    private readonly CalibrationRequirements _requirements;
    private readonly string? _cacheDirectory;
    private readonly ILogger _logger;
    private readonly IProgress<QuantizationProgress>? _progress;

    /// <summary>Creates the stage.</summary>
    /// <param name="calibrator">Collects (and weights) the statistics.</param>
    /// <param name="source">Runs the calibration data through the model.</param>
    /// <param name="requirements">What to collect.</param>
    /// <param name="cacheDirectory">Where to save and reuse statistics, or null for no cache.</param>
    /// <param name="logger">Where the stage logs.</param>
    /// <param name="progress">Receives the calibrator's progress.</param>
    public CaptureStage(ICalibrator calibrator, ICalibrationSource source, CalibrationRequirements requirements, string? cacheDirectory,
        ILogger logger, IProgress<QuantizationProgress>? progress)
    {
        _calibrator = calibrator ?? throw new ArgumentNullException(nameof(calibrator));
        _source = source ?? throw new ArgumentNullException(nameof(source));
        _requirements = requirements ?? throw new ArgumentNullException(nameof(requirements));
        _cacheDirectory = cacheDirectory;
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        _progress = progress;
    }

    /// <summary>
    /// Prepares a preparing calibrator on every layer of the run (the full-precision model) — unless every block's
    /// statistics are in the cache, so nothing will be captured.
    /// </summary>
    public void Prepare(IReadOnlyList<IQuantizableLayer> layers, IReadOnlyList<(string Block, IReadOnlyList<IQuantizableLayer> Layers)> blocks,
        CancellationToken cancellationToken)
    {
        if (_calibrator is not IPreparingCalibrator preparing) return;
        if (blocks.All(b => Cached(b.Block, b.Layers) is not null)) return;
        preparing.Prepare(layers, _progress, cancellationToken);
    }

    /// <summary>The statistics of <paramref name="layers"/> (block <paramref name="block"/>): from the cache when it matches, else captured (and cached).</summary>
    public CalibrationResult Run(string block, IReadOnlyList<IQuantizableLayer> layers, CancellationToken cancellationToken)
    {
        if (Cached(block, layers) is { } path)
        {
            _logger.LogInformation("Calibration statistics of {Block} loaded from {Path}", block, path);
            return CalibrationFile.Load(path, layers[0].Weight.device).Result;
        }
        var result = _calibrator.Calibrate(layers, _source, _requirements, _progress, cancellationToken);
        if (_cacheDirectory is not null)
        {
            Directory.CreateDirectory(_cacheDirectory);
            string target = PathFor(block);
            CalibrationFile.Save(result, target, Fingerprint(layers));
            _logger.LogInformation("Calibration statistics of {Block} saved to {Path}", block, target);
        }
        return result;
    }

    /// <summary>What a cached file must have been made for: calibrator, source, requirements, and the block's layers.</summary>
    public string Fingerprint(IReadOnlyList<IQuantizableLayer> layers)
    {
        var b = new StringBuilder();
        b.Append("calibrator=").Append(_calibrator.Name).Append(";source=").Append(_source.GetType().FullName).Append('×').Append(_source.Count)
            .Append(";second_moments=").Append(_requirements.InputSecondMoments).Append(";step_channels=").Append(_requirements.PerStepChannelExtremes)
            .Append(";layers=");
        foreach (var l in layers) b.Append(l.LayerName).Append('[').Append(l.InFeatures).Append(']').Append(',');
        return b.ToString();
    }

    private string? Cached(string block, IReadOnlyList<IQuantizableLayer> layers)
    {
        if (_cacheDirectory is null) return null;
        string path = PathFor(block);
        if (!File.Exists(path)) return null;
        try
        {
            var meta = IO.SafeTensors.ReadHeader(path).Metadata;
            if (meta.GetValueOrDefault("fingerprint") == Fingerprint(layers)) return path;
            _logger.LogWarning("Cached calibration statistics {Path} were made for another plan; capturing again", path);
        }
        catch (IO.CheckpointException e)
        {
            _logger.LogWarning("Cached calibration statistics {Path} are unreadable ({Message}); capturing again", path, e.Message);
        }
        return null;
    }

    private string PathFor(string block)
    {
        var safe = new string(block.Select(c => char.IsLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_').ToArray()).Trim('_');
        return Path.Combine(_cacheDirectory!, $"calibration-{(safe.Length == 0 ? "all" : safe)}.safetensors");
    }
}
