using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.QDit;

/// <summary>
/// The policy of a model during Q-DiT's group-size search: every searched layer prepares a weight version for each of its
/// candidate group sizes (<see cref="ConfigsFor"/>), and each call uses the group size the search has currently assigned
/// (<see cref="Assign"/>), or full precision (<see cref="AssignFullPrecision"/>). Not thread-safe: one search drives it.
/// </summary>
public sealed class GroupSizeSearchSpace : ITimestepPolicy
{
    private readonly Dictionary<string, int> _index;
    private readonly IReadOnlyDictionary<int, LayerQuantConfig>[] _configs;
    private readonly LayerQuantConfig[] _current;

    /// <summary>Creates the search space.</summary>
    /// <param name="layers">The searched layers' names.</param>
    /// <param name="choices">Each layer's candidate group sizes (0 = per channel), in the order of <paramref name="layers"/>.</param>
    /// <param name="configFor">The config of a group size (e.g. <see cref="QDitOptions.ConfigFor"/> with the builder's templates).</param>
    /// <exception cref="ArgumentException">The lists differ in length, or a layer has no choice.</exception>
    public GroupSizeSearchSpace(IReadOnlyList<string> layers, IReadOnlyList<IReadOnlyList<int>> choices, Func<int, LayerQuantConfig> configFor)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(choices);
        ArgumentNullException.ThrowIfNull(configFor);
        if (layers.Count != choices.Count) throw new ArgumentException($"{layers.Count} layers but {choices.Count} lists of group sizes.", nameof(choices));
        _index = layers.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i, StringComparer.Ordinal);
        _configs = choices.Select((c, i) => c.Count == 0
            ? throw new ArgumentException($"layer '{layers[i]}' has no candidate group size.", nameof(choices))
            : (IReadOnlyDictionary<int, LayerQuantConfig>)c.Distinct().ToDictionary(g => g, configFor)).ToArray();
        Layers = layers.ToList();
        Choices = choices.Select(c => (IReadOnlyList<int>)c.Distinct().ToList()).ToList();
        _current = _configs.Select(c => c.Values.First()).ToArray();
    }

    /// <summary>The searched layers, in order.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Each layer's candidate group sizes (0 = per channel).</summary>
    public IReadOnlyList<IReadOnlyList<int>> Choices { get; }

    /// <inheritdoc />
    public IReadOnlyCollection<string> NamedLayers => Layers;

    /// <inheritdoc />
    public string Name => $"Q-DiT group-size search space ({Layers.Count} layers)";

    /// <summary>The next calls use <paramref name="groups"/> (one candidate group size per layer, in order).</summary>
    /// <exception cref="ArgumentException">Not one group size per layer, or one that is not among the layer's choices.</exception>
    public void Assign(IReadOnlyList<int> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count != _current.Length) throw new ArgumentException($"{groups.Count} group sizes for {_current.Length} layers.", nameof(groups));
        for (int i = 0; i < _current.Length; i++)
            _current[i] = _configs[i].TryGetValue(groups[i], out var c) ? c
                : throw new ArgumentException($"layer '{Layers[i]}': group size {groups[i]} is not among its choices {{{string.Join(", ", Choices[i])}}}.", nameof(groups));
    }

    /// <summary>The next calls run every searched layer in full precision (the reference trajectory).</summary>
    public void AssignFullPrecision() => Array.Fill(_current, LayerQuantConfig.FullPrecision);

    /// <inheritdoc />
    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step) =>
        _index.TryGetValue(layerName, out int i) ? _current[i] : LayerQuantConfig.FullPrecision;

    /// <inheritdoc />
    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) =>
        _index.TryGetValue(layerName, out int i) ? _configs[i].Values.ToList() : [LayerQuantConfig.FullPrecision];
}
