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

    /// <summary>
    /// Saves the statistics to a safetensors file (atomically) so that a later run can reuse them instead of
    /// capturing again (see <see cref="CalibrationFile"/>). <paramref name="fingerprint"/> is stored in the header
    /// for the reader to check that the file was made for the same run.
    /// </summary>
    public void Save(string path, string? fingerprint = null) => CalibrationFile.Save(this, path, fingerprint);

    /// <summary>Loads statistics saved by <see cref="Save"/> onto <paramref name="device"/> (default CPU).</summary>
    /// <exception cref="CalibrationException">The file is missing, not a calibration file, of another format version, or inconsistent.</exception>
    public static CalibrationResult Load(string path, TorchSharp.torch.Device? device = null) => CalibrationFile.Load(path, device).Result;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var l in _layers.Values) l.Dispose();
    }
}
