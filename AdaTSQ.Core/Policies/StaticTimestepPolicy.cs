using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// One config for every step: a default for all layers, optionally overridden for named layers
/// (mixed precision across layers, not across time).
/// </summary>
public sealed class StaticTimestepPolicy : ITimestepPolicy
{
    private readonly IReadOnlyDictionary<string, LayerQuantConfig> _overrides;

    /// <summary>Creates the policy.</summary>
    /// <param name="defaultConfig">The config of every layer without an override.</param>
    /// <param name="overrides">Configs of individual layers, by full dotted name.</param>
    public StaticTimestepPolicy(LayerQuantConfig defaultConfig, IReadOnlyDictionary<string, LayerQuantConfig>? overrides = null)
    {
        DefaultConfig = defaultConfig ?? throw new ArgumentNullException(nameof(defaultConfig));
        _overrides = overrides is null ? new Dictionary<string, LayerQuantConfig>() : new Dictionary<string, LayerQuantConfig>(overrides);
    }

    /// <summary>The config of every layer without an override.</summary>
    public LayerQuantConfig DefaultConfig { get; }

    /// <summary>The per-layer overrides.</summary>
    public IReadOnlyDictionary<string, LayerQuantConfig> Overrides => _overrides;

    /// <inheritdoc />
    public IReadOnlyCollection<string> NamedLayers => _overrides.Keys.ToList();

    /// <inheritdoc />
    public string Name => _overrides.Count == 0 ? $"static {DefaultConfig}" : $"static {DefaultConfig} (+{_overrides.Count} overrides)";

    /// <inheritdoc />
    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step) =>
        _overrides.TryGetValue(layerName, out var config) ? config : DefaultConfig;

    /// <inheritdoc />
    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) => [Resolve(layerName, null)];
}
