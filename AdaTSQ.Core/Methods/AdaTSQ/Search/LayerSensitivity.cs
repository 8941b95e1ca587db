using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// How much quantizing each layer to each bit-width hurts, per sampling step: the score that ranks layers
/// when <see cref="CandidateGenerator"/> makes a stage's candidates.
/// <c>score(step, layer, b) = w_{step,layer} · E_layer(b)</c>, where <c>E_layer(b)</c> is the layer's
/// output error with its b-bit weight, <c>‖(W − Q_b) X‖²</c> on the calibration inputs (from the
/// Hessian Σ x xᵀ), or <c>‖W − Q_b‖²</c> when no calibration statistics exist, and
/// <c>w_{step,layer}</c> is the temporal Fisher weight α of the layer at the step
/// (<see cref="FisherWeighting"/>, mean 1 over steps), or 1 without a Fisher estimate.
/// </summary>
public sealed class LayerSensitivity
{
    private readonly double[][] _error;          // [layer][bit index]
    private readonly double[][]? _stepWeights;   // [step][layer]

    /// <summary>Creates the scores.</summary>
    /// <param name="layers">Layer names.</param>
    /// <param name="bits">The bit-widths, ascending.</param>
    /// <param name="error"><c>error[l][i]</c> = E of layer l at <c>bits[i]</c>.</param>
    /// <param name="stepWeights"><c>stepWeights[step][l]</c>, or null for 1 everywhere.</param>
    public LayerSensitivity(IReadOnlyList<string> layers, IReadOnlyList<int> bits, double[][] error, double[][]? stepWeights = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(bits);
        ArgumentNullException.ThrowIfNull(error);
        if (error.Length != layers.Count || error.Any(e => e.Length != bits.Count))
            throw new ArgumentException($"sensitivity errors must be [{layers.Count} layers][{bits.Count} bit-widths].", nameof(error));
        if (error.SelectMany(e => e).Any(v => !double.IsFinite(v) || v < 0))
            throw new ArgumentException("sensitivity errors must be finite and non-negative.", nameof(error));
        if (stepWeights is not null && stepWeights.Any(w => w.Length != layers.Count))
            throw new ArgumentException($"step weights must have one value per layer ({layers.Count}).", nameof(stepWeights));
        Layers = layers.ToArray();
        Bits = bits.ToArray();
        _error = error.Select(e => e.ToArray()).ToArray();
        _stepWeights = stepWeights?.Select(w => w.ToArray()).ToArray();
    }

    /// <summary>Layer names, in the order of the scores.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>The bit-widths, ascending.</summary>
    public IReadOnlyList<int> Bits { get; }

    /// <summary>Steps with their own weights (0 = the same for every step).</summary>
    public int WeightedSteps => _stepWeights?.Length ?? 0;

    /// <summary>E of layer <paramref name="layer"/> (index) at bit index <paramref name="bit"/>.</summary>
    public double Error(int layer, int bit) => _error[layer][bit];

    /// <summary>The mean weight of each layer over steps <paramref name="first"/>…<paramref name="last"/> (1 without step weights).</summary>
    public double[] StageWeights(int first, int last)
    {
        var w = new double[Layers.Count];
        for (int l = 0; l < w.Length; l++)
        {
            if (_stepWeights is null) { w[l] = 1; continue; }
            double sum = 0;
            for (int s = first; s <= last; s++) sum += _stepWeights[s][l];
            w[l] = sum / (last - first + 1);
        }
        return w;
    }

    /// <summary>
    /// Scores of quantized <paramref name="layers"/> that hold a weight version for every config of
    /// <paramref name="options"/>: E from the calibration Hessians of <paramref name="reports"/> when they
    /// carry <see cref="LayerReport.OutputSquaredError"/>, else from the weights; step weights from
    /// <paramref name="fisher"/> when given.
    /// </summary>
    public static LayerSensitivity FromLayers(IReadOnlyList<QuantLinear> layers, BitWidthSearchOptions options,
        IReadOnlyList<LayerReport>? reports = null, TemporalFisher? fisher = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(options);
        var bits = options.WeightBits.Distinct().Order().ToList();
        var error = new double[layers.Count][];
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            error[l] = new double[bits.Count];
            for (int i = 0; i < bits.Count; i++)
            {
                var config = options.ConfigFor(bits[i]);
                if (!config.Weight.IsEnabled) continue;
                var report = reports?.FirstOrDefault(r => r.Name == layer.LayerName && r.Config.Weight == config.Weight);
                if (report?.OutputSquaredError is { } e) { error[l][i] = e; continue; }
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var w = layer.SmoothedWeight().to(ScalarType.Float64);
                var q = layer.GetWeightVersion(config.Weight).Dequantize().to(ScalarType.Float64);
                error[l][i] = (w - q).square().sum().item<double>();
            }
        }
        double[][]? stepWeights = null;
        if (fisher is not null)
        {
            var alpha = fisher.Weights(options.SensitivityWeighting);
            var missing = layers.Where(l => !alpha.ContainsKey(l.LayerName)).Select(l => l.LayerName).ToList();
            if (missing.Count > 0)
                throw new CalibrationException($"the temporal Fisher has no values for {missing.Count} searched layer(s): {string.Join(", ", missing.Take(5))}.");
            stepWeights = Enumerable.Range(0, fisher.Steps.Count).Select(s => layers.Select(l => alpha[l.LayerName][s]).ToArray()).ToArray();
        }
        return new LayerSensitivity(layers.Select(l => l.LayerName).ToList(), bits, error, stepWeights);
    }
}
