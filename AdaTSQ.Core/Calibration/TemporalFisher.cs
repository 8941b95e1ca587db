using System.Text.Json;
using AdaTSQ.Abstractions;

namespace AdaTSQ.Calibration;

/// <summary>
/// Temporal Fisher information of a diffusion model: for every sampling step <c>t</c> and every
/// quantizable layer <c>l</c>, <c>F_{t,l} = E[ ‖∇_{W_l} ℓ_t‖² ]</c>, the trace of the empirical
/// (diagonal) Fisher of the layer's weight under the denoising loss at that step (see
/// <see cref="TemporalFisherEstimator"/> for the exact loss). Large values mean that the loss is
/// sharply curved in that layer's weights at that step: its quantization error costs more there.
/// </summary>
public sealed class TemporalFisher
{
    private readonly double[,] _values;
    private readonly Dictionary<string, int> _layerIndex;

    /// <summary>Creates the result from values indexed <c>[step, layer]</c> (copied).</summary>
    public TemporalFisher(IReadOnlyList<TimestepInfo> steps, IReadOnlyList<string> layers, double[,] values, int samplesPerStep)
    {
        ArgumentNullException.ThrowIfNull(steps);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(values);
        if (values.GetLength(0) != steps.Count || values.GetLength(1) != layers.Count)
            throw new ArgumentException($"Fisher values are [{values.GetLength(0)}, {values.GetLength(1)}], expected [{steps.Count} steps, {layers.Count} layers].", nameof(values));
        for (int i = 0; i < steps.Count; i++)
            if (steps[i].StepIndex != i) throw new ArgumentException($"step {i} has index {steps[i].StepIndex}: give the steps in order.", nameof(steps));
        Steps = steps.ToArray();
        Layers = layers.ToArray();
        _values = (double[,])values.Clone();
        _layerIndex = Layers.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
        SamplesPerStep = samplesPerStep;
    }

    /// <summary>The sampling steps, index 0 = first (noisiest).</summary>
    public IReadOnlyList<TimestepInfo> Steps { get; }

    /// <summary>The layers, by dotted name.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Calibration samples averaged per step.</summary>
    public int SamplesPerStep { get; }

    /// <summary>F at step <paramref name="step"/> for layer <paramref name="layer"/>.</summary>
    public double this[int step, string layer] => _values[step, LayerIndex(layer)];

    /// <summary>Σ_l F_{t,l}: the whole model's Fisher per step.</summary>
    public double[] StepTotals() =>
        Enumerable.Range(0, Steps.Count).Select(t => Enumerable.Range(0, Layers.Count).Sum(l => _values[t, l])).ToArray();

    /// <summary>F_{t,l} over steps for one layer.</summary>
    public double[] LayerValues(string layer)
    {
        int l = LayerIndex(layer);
        return Enumerable.Range(0, Steps.Count).Select(t => _values[t, l]).ToArray();
    }

    /// <summary>The step weights α of every layer under <paramref name="weighting"/> (shared ones when it is not per layer).</summary>
    public IReadOnlyDictionary<string, double[]> Weights(FisherWeighting weighting)
    {
        ArgumentNullException.ThrowIfNull(weighting);
        if (!weighting.PerLayer)
        {
            var shared = weighting.Normalize(StepTotals());
            return Layers.ToDictionary(l => l, _ => shared);
        }
        return Layers.ToDictionary(l => l, l => weighting.Normalize(LayerValues(l)));
    }

    /// <summary>JSON with the steps, layers and values (for reports and plots).</summary>
    public string ToJson() => JsonSerializer.Serialize(new
    {
        samples_per_step = SamplesPerStep,
        steps = Steps.Select(s => new { index = s.StepIndex, timestep = s.Timestep }),
        layers = Layers,
        step_totals = StepTotals(),
        values = Enumerable.Range(0, Steps.Count).Select(t => Enumerable.Range(0, Layers.Count).Select(l => _values[t, l]).ToArray()),
    }, new JsonSerializerOptions { WriteIndented = true });

    private int LayerIndex(string layer) => _layerIndex.TryGetValue(layer, out var i)
        ? i
        : throw new CalibrationException($"the temporal Fisher estimate has no layer '{layer}' (it has {Layers.Count} layers: {string.Join(", ", Layers.Take(8))}{(Layers.Count > 8 ? ", …" : "")}).");
}
