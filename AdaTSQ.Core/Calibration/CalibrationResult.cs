namespace AdaTSQ.Calibration;

/// <summary>Statistics of every calibrated layer, by layer name. Owns them.</summary>
public sealed class CalibrationResult : IDisposable
{
    private readonly Dictionary<string, LayerStatistics> _layers;

    /// <summary>Creates the result; takes ownership of the statistics.</summary>
    public CalibrationResult(IEnumerable<LayerStatistics> layers, int items, TimeSpan elapsed)
    {
        _layers = layers.ToDictionary(l => l.LayerName);
        Items = items;
        Elapsed = elapsed;
    }

    /// <summary>Statistics by layer name.</summary>
    public IReadOnlyDictionary<string, LayerStatistics> Layers => _layers;

    /// <summary>Calibration items run.</summary>
    public int Items { get; }

    /// <summary>Wall time of the calibration run.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>The statistics of <paramref name="layerName"/>, or null.</summary>
    public LayerStatistics? For(string layerName) => _layers.GetValueOrDefault(layerName);

    /// <summary>Bytes held by all the statistics.</summary>
    public long Bytes => _layers.Values.Sum(l => l.Bytes);

    /// <summary>Names of layers that saw no input at all.</summary>
    public IReadOnlyList<string> LayersWithoutData => _layers.Values.Where(l => !l.HasData).Select(l => l.LayerName).ToList();

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var l in _layers.Values) l.Dispose();
    }
}
