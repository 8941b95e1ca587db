using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// The cost side of the search: parameters, multiply-accumulates per sample and weight-version bytes of every
/// layer, and the budget's measure of candidates and paths.
/// </summary>
internal sealed class SearchCost
{
    private readonly BitWidthSearchOptions _options;
    private readonly double _totalParameters;
    private readonly double[] _macs;                      // per model evaluation per sample
    private readonly Dictionary<long, long> _bytes = new(); // Key(layer, bits) → bytes of that weight version
    private readonly Dictionary<long, (long Key, long Bytes)> _parent = new(); // a nested version → its parent's key and bytes

    private SearchCost(BitWidthSearchOptions options, long[] parameters, double[] macs)
    {
        _options = options;
        Parameters = parameters;
        _totalParameters = parameters.Sum(n => (double)n);
        _macs = macs;
    }

    public BudgetKind Kind => _options.Budget.Kind;

    public IReadOnlyList<long> Parameters { get; }

    public static long Key(int layer, int bits) => layer * 64L + bits;

    /// <summary>Measures MACs with one observed model call on one sample at the first step (full precision).</summary>
    public static SearchCost Measure(IReadOnlyList<QuantLinear> layers, SearchTrajectories trajectories, SearchSpacePolicy policy, BitWidthSearchOptions options)
    {
        var rows = new double[layers.Count];
        var recorder = new RowRecorder(layers, rows);
        var observers = layers.Select(l => l.Observer).ToArray();
        try
        {
            foreach (var l in layers) l.Observer = recorder;
            policy.Assign(Enumerable.Repeat(LayerQuantConfig.FullPrecision, layers.Count).ToList());
            using var x = trajectories.Noise[..1];
            using var y = trajectories.Labels[..1];
            using var _ = trajectories.Sampler.Step(trajectories.Model, x, y, 0);
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Observer = observers[i];
        }
        var parameters = layers.Select(l => l.InFeatures * l.OutFeatures).ToArray();
        var cost = new SearchCost(options, parameters, rows.Select((r, i) => r * parameters[i]).ToArray());
        for (int l = 0; l < layers.Count; l++)
            foreach (int b in options.SearchedBits.Distinct())
                if (options.ConfigFor(b).Weight is { IsEnabled: true } spec)
                {
                    cost._bytes[cost.VersionKey(Key(l, b))] = layers[l].WeightVersionBytes(spec);
                    // A nested version (nested weights) needs its parent's codes in memory too.
                    if (layers[l].NestedParentOf(spec) is { } parent)
                        cost._parent[cost.VersionKey(Key(l, b))] = (Key(l, parent.Bits), layers[l].WeightVersionBytes(parent));
                }
        return cost;
    }

    /// <summary>Σ_l MACs_l × weight bits × activation bits of one model evaluation for one sample.</summary>
    public double Bops(BitCandidate c)
    {
        double sum = 0;
        for (int l = 0; l < _macs.Length; l++)
        {
            var config = _options.ConfigFor(c.Bits[l]);
            sum += _macs[l] * config.WeightBits * config.ActivationBits;
        }
        return sum;
    }

    /// <summary>Parameter-weighted average of per-layer weight bits.</summary>
    public double AverageBits(IReadOnlyList<int> bits)
    {
        double sum = 0, total = 0;
        for (int l = 0; l < bits.Count; l++) { sum += Parameters[l] * (double)bits[l]; total += Parameters[l]; }
        return sum / total;
    }

    /// <summary>
    /// The additive cost (the budget's measure summed over steps) of layer <paramref name="layer"/> at <paramref name="bits"/>
    /// for <paramref name="steps"/> steps; a stage's <see cref="StageCost"/> is the sum over its layers (0 for memory budgets).
    /// </summary>
    public double CellCost(int layer, int bits, int steps) => Kind switch
    {
        BudgetKind.AverageWeightBits or BudgetKind.AverageActivationBits => Parameters[layer] * (double)bits / _totalParameters * steps,
        BudgetKind.AverageBitOperations => _macs[layer] * _options.ConfigFor(bits).WeightBits * _options.ConfigFor(bits).ActivationBits * steps,
        _ => 0,
    };

    /// <summary>
    /// Bytes in memory of a set of (layer, bits) weight versions: each once, plus the parent of every nested version once
    /// (if the set does not hold it already).
    /// </summary>
    public long StoredBytes(IEnumerable<(int Layer, int Bits)> versions) => StoredBytes(versions.Select(v => Key(v.Layer, v.Bits)));

    /// <summary>Whether a complete policy of additive cost <paramref name="additive"/> (summed over <paramref name="steps"/> steps) or of <paramref name="bytes"/> weight bytes meets the budget.</summary>
    public bool Meets(double additive, long bytes, int steps) => Kind == BudgetKind.WeightMemory
        ? bytes <= _options.Budget.Value
        : additive / steps <= _options.Budget.Value * (1 + 1e-12);

    public long Bytes(BitCandidate c) => StoredBytes(c.Bits.Select((b, l) => Key(l, b)));

    public long Bytes(IEnumerable<BitCandidate> choices) => StoredBytes(choices.SelectMany(c => c.Bits.Select((b, l) => Key(l, b))));

    // The weight version a (layer, searched bits) key runs: Key(layer, weight bits). On the weight axis the key itself; on
    // the activation axis every width of a layer shares its one weight version (stored once).
    private long VersionKey(long key) => _options.Axis == SearchAxis.ActivationBits
        ? Key((int)(key / 64), _options.ConfigFor((int)(key % 64)).Weight.Bits)
        : key;

    // Bytes of a set of versions in memory: each once, plus the parent of every nested one (once, if not in the set).
    private long StoredBytes(IEnumerable<long> keys)
    {
        var set = keys.Select(VersionKey).ToHashSet();
        long sum = set.Sum(k => _bytes.GetValueOrDefault(k));
        foreach (var parent in set.Where(_parent.ContainsKey).Select(k => _parent[k]).DistinctBy(p => p.Key))
            if (!set.Contains(parent.Key)) sum += parent.Bytes;
        return sum;
    }

    public double StageCost(BitCandidate c, int steps) => Kind switch
    {
        BudgetKind.AverageWeightBits or BudgetKind.AverageActivationBits => c.AverageWeightBits * steps,
        BudgetKind.AverageBitOperations => Bops(c) * steps,
        _ => 0,
    };

    public double PathCost(SearchPath p) => Kind == BudgetKind.WeightMemory ? StoredBytes(p.Used) : p.Additive;

    /// <summary>Whether <paramref name="p"/> can still meet the budget when the remaining stages cost at least <paramref name="cheapestRest"/>.</summary>
    public bool Feasible(SearchPath p, double cheapestRest, int steps) => Kind == BudgetKind.WeightMemory
        ? PathCost(p) <= _options.Budget.Value
        : (p.Additive + cheapestRest) / steps <= _options.Budget.Value * (1 + 1e-12);

    private sealed class RowRecorder(IReadOnlyList<QuantLinear> layers, double[] rows) : ILayerInputObserver
    {
        public void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step)
        {
            for (int i = 0; i < layers.Count; i++)
                if (ReferenceEquals(layers[i], layer)) rows[i] += input.numel() / (double)layer.InFeatures;
        }
    }
}
