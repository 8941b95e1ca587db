using AdaTSQ.Abstractions;
using static TorchSharp.torch;

namespace AdaTSQ.Calibration;

/// <summary>
/// The observer calibrators attach to layers: it feeds each layer's inputs into that layer's
/// <see cref="LayerStatistics"/>, weighting each call by a step weight α (1 for a uniform
/// calibrator; a temporal-Fisher weight for AdaTSQ's). Attach with <see cref="Attach"/>; the returned
/// scope detaches it again, even when calibration fails.
/// </summary>
public sealed class LayerStatisticsCollector : ILayerInputObserver
{
    private readonly Dictionary<IQuantizableLayer, LayerStatistics> _statistics;
    private readonly Func<IQuantizableLayer, TimestepInfo?, double> _stepWeight;

    /// <summary>Creates empty statistics for <paramref name="layers"/>.</summary>
    /// <param name="layers">The layers to observe.</param>
    /// <param name="requirements">What to collect.</param>
    /// <param name="stepWeight">α for a call of a layer at a step (null = 1 for every call).</param>
    public LayerStatisticsCollector(IEnumerable<IQuantizableLayer> layers, CalibrationRequirements requirements,
        Func<IQuantizableLayer, TimestepInfo?, double>? stepWeight = null)
    {
        _statistics = layers.ToDictionary(l => l, l => new LayerStatistics(l.LayerName, l.InFeatures, requirements.InputSecondMoments, requirements.PerStepChannelExtremes));
        _stepWeight = stepWeight ?? ((_, _) => 1.0);
    }

    /// <summary>The statistics collected so far, by layer.</summary>
    public IReadOnlyDictionary<IQuantizableLayer, LayerStatistics> Statistics => _statistics;

    /// <inheritdoc />
    public void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step)
    {
        if (_statistics.TryGetValue(layer, out var stats)) stats.Add(input, step, _stepWeight(layer, step));
    }

    /// <summary>Sets this collector as the observer of every layer until the returned scope is disposed.</summary>
    public IDisposable Attach()
    {
        foreach (var layer in _statistics.Keys)
        {
            if (layer.Observer is not null && !ReferenceEquals(layer.Observer, this))
                throw new InvalidOperationException($"layer '{layer.LayerName}' is already observed by another calibration run.");
            layer.Observer = this;
        }
        return new Detacher(_statistics.Keys);
    }

    /// <summary>Hands the statistics over (the collector keeps no reference to them).</summary>
    public CalibrationResult ToResult(int items, TimeSpan elapsed) => new(_statistics.Values, items, elapsed);

    private sealed class Detacher(IEnumerable<IQuantizableLayer> layers) : IDisposable
    {
        public void Dispose()
        {
            foreach (var l in layers) l.Observer = null;
        }
    }
}
