using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// The policy of a model during a bit-width search: every searched layer prepares a weight version for
/// every config of the search space (<see cref="ConfigsFor"/>), and each call uses the config the search
/// has currently assigned (the most precise one until it assigns). Not thread-safe: one search drives it.
/// </summary>
public sealed class SearchSpacePolicy : ITimestepPolicy
{
    private readonly Dictionary<string, int> _index;
    private readonly LayerQuantConfig[] _current;
    private readonly LayerQuantConfig[] _space;

    /// <summary>Creates the policy for <paramref name="layers"/> over the configs of <paramref name="options"/>.</summary>
    public SearchSpacePolicy(IReadOnlyList<string> layers, BitWidthSearchOptions options)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(options);
        _index = layers.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
        _space = options.SearchedBits.Distinct().Order().Select(options.ConfigFor).ToArray();
        _current = Enumerable.Repeat(_space[^1], layers.Count).ToArray();
    }

    /// <inheritdoc />
    public IReadOnlyCollection<string> NamedLayers => _index.Keys.ToList();

    /// <inheritdoc />
    public string Name => $"search space {string.Join("/", _space.Select(c => c.ToString()))}";

    /// <summary>The configs every searched layer holds.</summary>
    public IReadOnlyList<LayerQuantConfig> Space => _space;

    /// <summary>Assigns <paramref name="configs"/> (one per layer, in the constructor's order) to the next calls.</summary>
    public void Assign(IReadOnlyList<LayerQuantConfig> configs)
    {
        if (configs.Count != _current.Length) throw new ArgumentException($"{configs.Count} configs for {_current.Length} layers.", nameof(configs));
        for (int i = 0; i < _current.Length; i++) _current[i] = configs[i];
    }

    /// <inheritdoc />
    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step) =>
        _index.TryGetValue(layerName, out int i) ? _current[i] : LayerQuantConfig.FullPrecision;

    /// <inheritdoc />
    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) =>
        _index.ContainsKey(layerName) ? _space : [LayerQuantConfig.FullPrecision];
}
