using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;

namespace AdaTSQ.Policies;

/// <summary>
/// A config per sampling step and per layer: the most general timestep policy, and what AdaTSQ's
/// bit-width search returns. Layers it does not name use <see cref="OtherLayers"/> (full precision by default).
/// </summary>
/// <remarks>
/// <para>Steps are sampling-step indices (0 = first, noisiest). A sampler with a different number of
/// steps than the policy is mapped by position in the trajectory: step <c>k</c> of <c>n</c> uses the
/// policy's step <c>round(k/(n−1)·(N−1))</c>, so a 50-step policy can drive a 25-step sampler.</para>
/// <para>Outside any step (no <see cref="TimestepContext"/>), a layer uses its most precise config over
/// the steps (highest weight bits, then activation bits), so no weight version is added for that case.</para>
/// </remarks>
public sealed class DynamicTimestepPolicy : ITimestepPolicy
{
    private readonly LayerQuantConfig[][] _configs;     // [step][layer]
    private readonly Dictionary<string, int> _layerIndex;
    private readonly Dictionary<string, IReadOnlyCollection<LayerQuantConfig>> _used = new();
    private readonly Dictionary<string, LayerQuantConfig> _stepless = new();

    /// <summary>Creates the policy.</summary>
    /// <param name="layers">The layers it configures, by full dotted name (distinct).</param>
    /// <param name="steps"><c>steps[k][l]</c> = the config of <c>layers[l]</c> at sampling step <c>k</c>.</param>
    /// <param name="otherLayers">The config of layers not in <paramref name="layers"/> (default: full precision).</param>
    /// <param name="name">A name for logs (default: "dynamic").</param>
    /// <exception cref="ArgumentException">No steps, duplicate layer names, or a step whose row length differs from the layer count.</exception>
    public DynamicTimestepPolicy(IReadOnlyList<string> layers, IReadOnlyList<IReadOnlyList<LayerQuantConfig>> steps, LayerQuantConfig? otherLayers = null, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(steps);
        if (steps.Count == 0) throw new ArgumentException("a dynamic policy needs at least one step.", nameof(steps));
        var duplicate = layers.GroupBy(l => l).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"layer '{duplicate.Key}' is named twice.", nameof(layers));
        for (int k = 0; k < steps.Count; k++)
        {
            if (steps[k] is null || steps[k].Count != layers.Count)
                throw new ArgumentException($"step {k} has {steps[k]?.Count ?? 0} configs for {layers.Count} layers.", nameof(steps));
            if (steps[k].Any(c => c is null)) throw new ArgumentException($"step {k} has a null config.", nameof(steps));
        }
        Layers = layers.ToArray();
        _configs = steps.Select(s => s.ToArray()).ToArray();
        _layerIndex = Layers.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
        OtherLayers = otherLayers ?? LayerQuantConfig.FullPrecision;
        Name = name ?? "dynamic";
        for (int l = 0; l < Layers.Count; l++)
        {
            var column = _configs.Select(row => row[l]).ToList();
            _used[Layers[l]] = column.Distinct().ToArray();
            _stepless[Layers[l]] = StepMapping.MostPrecise(column);
        }
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The configured layers, in the order of the rows.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <inheritdoc />
    public IReadOnlyCollection<string> NamedLayers => Layers.ToList();

    /// <summary>The number of sampling steps the policy was made for.</summary>
    public int StepCount => _configs.Length;

    /// <summary>The config of layers the policy does not name.</summary>
    public LayerQuantConfig OtherLayers { get; }

    /// <summary>The config of <paramref name="layer"/> at step index <paramref name="step"/> (0-based, of <see cref="StepCount"/>).</summary>
    public LayerQuantConfig this[int step, string layer] =>
        _layerIndex.TryGetValue(layer, out int l) ? _configs[step][l] : OtherLayers;

    /// <inheritdoc />
    public LayerQuantConfig Resolve(string layerName, TimestepInfo? step)
    {
        if (!_layerIndex.TryGetValue(layerName, out int l)) return OtherLayers;
        if (step is not { } s) return _stepless[layerName];
        return _configs[MapStep(s)][l];
    }

    /// <inheritdoc />
    public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) =>
        _used.TryGetValue(layerName, out var used) ? used : [OtherLayers];

    /// <summary>The policy's step index used for sampler step <paramref name="step"/> (by position when the step counts differ).</summary>
    public int MapStep(TimestepInfo step) => StepMapping.ToPolicyStep(step, StepCount);
}
