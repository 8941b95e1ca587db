using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// The policy of a model during ViDiT-Q's mixed-precision measurement: every layer holds a weight version for the low
/// and the high config (<see cref="ConfigsFor"/>), and each call uses the config assigned to its layer (the high one until
/// assigned; full precision can be assigned too). Not thread-safe: one measurement drives it.
/// </summary>
internal sealed class MixedPrecisionSpacePolicy : ITimestepPolicy
{
    private readonly Dictionary<string, int> _index;
    private readonly LayerQuantConfig[] _current;

    public MixedPrecisionSpacePolicy(IReadOnlyList<string> layers, LayerQuantConfig low, LayerQuantConfig high)
    {
        _index = layers.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
        Low = low;
        High = high;
        _current = Enumerable.Repeat(high, layers.Count).ToArray();
    }

    public LayerQuantConfig Low { get; }

    public LayerQuantConfig High { get; }

    public IReadOnlyCollection<string> NamedLayers => _index.Keys.ToList();

    public string Name => $"ViDiT-Q mixed-precision space {Low}/{High}";

    /// <summary>Every layer at <paramref name="config"/>, except layer <paramref name="except"/> (index, or −1) at <paramref name="exceptConfig"/>.</summary>
    public void Assign(LayerQuantConfig config, int except = -1, LayerQuantConfig? exceptConfig = null)
    {
        Array.Fill(_current, config);
        if (except >= 0) _current[except] = exceptConfig ?? config;
    }

    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step) =>
        _index.TryGetValue(layerName, out int i) ? _current[i] : LayerQuantConfig.FullPrecision;

    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) =>
        _index.ContainsKey(layerName) ? [Low, High] : [LayerQuantConfig.FullPrecision];
}
