using AdaTSQ.Abstractions;
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
/// <c>score(step, layer, b) = w_{step,layer} · E_layer(b)</c>. What <c>w</c> and <c>E</c> are depends on
/// <see cref="BitWidthSearchOptions.Sensitivity"/> (<see cref="SensitivityMode"/>). With the default
/// <see cref="SensitivityMode.PerLayerAlpha"/>, <c>E_layer(b)</c> is the layer's output error with its b-bit
/// weight, <c>‖(W − Q_b) X‖²</c> on the calibration inputs (from the Hessian Σ x xᵀ), or <c>‖W − Q_b‖²</c> when no
/// calibration statistics exist, and <c>w_{step,layer}</c> is the temporal Fisher weight α of the layer at the step
/// (<see cref="FisherWeighting"/>, mean 1 over steps), or 1 without a Fisher estimate. With
/// <see cref="SensitivityMode.CrossLayerFisher"/>, <c>w</c> is the raw Fisher per weight normalized once over all
/// steps and layers and <c>E</c> a weight-space error that carries no Fisher magnitude.
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
    /// <paramref name="options"/>, in the mode <see cref="BitWidthSearchOptions.Sensitivity"/>: E from the calibration
    /// Hessians of <paramref name="reports"/> when they carry <see cref="LayerReport.OutputSquaredError"/> (and, for
    /// <see cref="SensitivityMode.CrossLayerFisher"/>, <see cref="LayerReport.InputSecondMomentTrace"/>), else from
    /// the weights; step weights from <paramref name="fisher"/> when given.
    /// </summary>
    /// <exception cref="CalibrationException">The Fisher estimate lacks a searched layer.</exception>
    public static LayerSensitivity FromLayers(IReadOnlyList<QuantLinear> layers, BitWidthSearchOptions options,
        IReadOnlyList<LayerReport>? reports = null, TemporalFisher? fisher = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(options);
        if (!Enum.IsDefined(options.Sensitivity))
            throw new ArgumentException($"sensitivity mode {(int)options.Sensitivity} is not a SensitivityMode value.", nameof(options));
        bool crossLayer = options.Sensitivity == SensitivityMode.CrossLayerFisher;
        var bits = options.SearchedBits.Distinct().Order().ToList();
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
                if (!crossLayer && report?.OutputSquaredError is { } e) { error[l][i] = e; continue; }
                // d_in · E / tr(H̄): the scale of the Hessian's weighting (e.g. the Fisher α of a calibration) cancels.
                if (crossLayer && report is { OutputSquaredError: { } oe, InputSecondMomentTrace: { } trace } && trace > 0)
                {
                    error[l][i] = layer.InFeatures * oe / trace;
                    continue;
                }
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var w = layer.SmoothedWeight().to(ScalarType.Float64);
                var q = layer.GetWeightVersion(config.Weight).Dequantize().to(ScalarType.Float64);
                error[l][i] = (w - q).square().sum().item<double>();
            }
        }
        var stepWeights = StepWeights(layers, options, fisher, crossLayer);
        return new LayerSensitivity(layers.Select(l => l.LayerName).ToList(), bits, error, stepWeights);
    }

    // The step weights w[step][layer] from a temporal Fisher estimate (null without one), in the options' mode.
    private static double[][]? StepWeights(IReadOnlyList<QuantLinear> layers, BitWidthSearchOptions options, TemporalFisher? fisher, bool crossLayer)
    {
        double[][]? stepWeights = null;
        if (fisher is not null)
        {
            var missing = layers.Where(l => !fisher.Layers.Contains(l.LayerName)).Select(l => l.LayerName).ToList();
            if (missing.Count > 0)
                throw new CalibrationException($"the temporal Fisher has no values for {missing.Count} searched layer(s): {string.Join(", ", missing.Take(5))}.");
            if (crossLayer)
            {
                var raw = layers.Select(l => fisher.LayerValues(l.LayerName)).ToArray();
                stepWeights = CrossLayerWeights(raw, layers.Select(l => l.InFeatures * l.OutFeatures).ToArray());
            }
            else
            {
                var alpha = fisher.Weights(options.SensitivityWeighting);
                stepWeights = Enumerable.Range(0, fisher.Steps.Count).Select(s => layers.Select(l => alpha[l.LayerName][s]).ToArray()).ToArray();
            }
        }
        return stepWeights;
    }

    /// <summary>
    /// Scores for the activation axis (<see cref="SearchAxis.ActivationBits"/>): <c>E_layer(b)</c> is the layer's output
    /// error <c>‖y_b − y_fp‖²</c> when only its input is quantized to b bits (with its weight version, smoothing, rotation and
    /// low-rank branch as in a real call), on inputs recorded from the full-precision run of <paramref name="trajectories"/>:
    /// up to <paramref name="samples"/> trajectories, every <c>⌈steps/8⌉</c>-th step, at most <paramref name="maxRows"/> rows
    /// per layer (evenly spaced). The weight error is the same at every b and cancels in the candidates' trade-offs. Step
    /// weights from <paramref name="fisher"/> as in <see cref="FromLayers"/>. The layers' policies and observers are restored.
    /// </summary>
    /// <exception cref="ArgumentException">The options are not on the activation axis.</exception>
    /// <exception cref="CalibrationException">The Fisher estimate lacks a searched layer.</exception>
    public static LayerSensitivity FromActivationError(IReadOnlyList<QuantLinear> layers, BitWidthSearchOptions options, SearchTrajectories trajectories,
        TemporalFisher? fisher = null, int samples = 2, int maxRows = 1024)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(trajectories);
        if (options.Axis != SearchAxis.ActivationBits)
            throw new ArgumentException("FromActivationError scores activation bit-widths: set Axis = SearchAxis.ActivationBits (FromLayers scores weight bit-widths).", nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        var names = layers.Select(l => l.LayerName).ToList();
        var bits = options.SearchedBits.Distinct().Order().ToList();
        var policy = new SearchSpacePolicy(names, options);
        var fp = Enumerable.Repeat(LayerQuantConfig.FullPrecision, layers.Count).ToList();
        var previous = layers.Select(l => l.Policy).ToArray();
        var observers = layers.Select(l => l.Observer).ToArray();
        var inputs = layers.Select(_ => new List<Tensor>()).ToArray();
        var error = new double[layers.Count][];
        try
        {
            foreach (var layer in layers) layer.Policy = policy;
            policy.Assign(fp);
            var recorder = new InputRecorder(layers, inputs);
            foreach (var layer in layers) layer.Observer = recorder;
            int steps = trajectories.Sampler.StepCount, stride = Math.Max(1, (steps + 7) / 8), n = Math.Min(samples, trajectories.Count);
            using (torch.no_grad())
            {
                Tensor x;
                using (var first = trajectories.Noise[..n]) x = first.clone();
                using var labels = trajectories.Labels[..n];
                for (int step = 0; step < steps; step++)
                {
                    recorder.Active = step % stride == 0;
                    var next = trajectories.Sampler.Step(trajectories.Model, x, labels, step);
                    x.Dispose();
                    x = next;
                }
                x.Dispose();
            }
            for (int l = 0; l < layers.Count; l++) layers[l].Observer = null;

            for (int l = 0; l < layers.Count; l++)
            {
                error[l] = new double[bits.Count];
                if (inputs[l].Count == 0) continue;
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var all = torch.cat(inputs[l]);
                var rows = all.shape[0] <= maxRows ? all : all.index_select(0, torch.linspace(0, all.shape[0] - 1, maxRows, device: all.device).to(ScalarType.Int64));
                policy.Assign(fp);
                var reference = layers[l].call(rows).to(ScalarType.Float64);
                for (int i = 0; i < bits.Count; i++)
                {
                    var configs = fp.ToList();
                    configs[l] = options.ConfigFor(bits[i]);
                    policy.Assign(configs);
                    error[l][i] = (layers[l].call(rows).to(ScalarType.Float64) - reference).square().sum().item<double>();
                }
            }
        }
        finally
        {
            for (int l = 0; l < layers.Count; l++)
            {
                layers[l].Policy = previous[l];
                layers[l].Observer = observers[l];
                foreach (var t in inputs[l]) t.Dispose();
            }
        }
        // Fewer activation bits never make a layer's output error smaller in expectation: keep E non-increasing in b so that
        // the candidates' trade-offs stay well-defined when two widths measure the same (e.g. A8 and A16 on a tiny layer).
        for (int l = 0; l < error.Length; l++)
            for (int i = error[l].Length - 2; i >= 0; i--) error[l][i] = Math.Max(error[l][i], error[l][i + 1]);
        return new LayerSensitivity(names, bits, error, StepWeights(layers, options, fisher, options.Sensitivity == SensitivityMode.CrossLayerFisher));
    }

    // Keeps copies of the inputs each layer sees while Active (2-D rows [n, in]).
    private sealed class InputRecorder(IReadOnlyList<QuantLinear> layers, List<Tensor>[] inputs) : ILayerInputObserver
    {
        public bool Active { get; set; }

        public void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step)
        {
            if (!Active) return;
            for (int i = 0; i < layers.Count; i++)
                if (ReferenceEquals(layers[i], layer))
                    inputs[i].Add(input.detach().reshape(-1, layer.InFeatures).clone().DetachFromDisposeScope());
        }
    }

    /// <summary>
    /// The step weights of <see cref="SensitivityMode.CrossLayerFisher"/>: <c>φ[t][l] = (F_{t,l} / n_l) / mean(F / n)</c>,
    /// the Fisher per weight normalized once over every step and layer (1 everywhere when every value is 0).
    /// </summary>
    /// <param name="fisher"><c>fisher[l][t]</c> = F of layer l at step t (finite, non-negative).</param>
    /// <param name="parameters">Weights of each layer (positive).</param>
    /// <exception cref="ArgumentException">Ragged or invalid values.</exception>
    public static double[][] CrossLayerWeights(IReadOnlyList<IReadOnlyList<double>> fisher, IReadOnlyList<long> parameters)
    {
        ArgumentNullException.ThrowIfNull(fisher);
        ArgumentNullException.ThrowIfNull(parameters);
        if (fisher.Count != parameters.Count)
            throw new ArgumentException($"{fisher.Count} Fisher rows for {parameters.Count} layers.", nameof(fisher));
        if (fisher.Count == 0) return [];
        int steps = fisher[0].Count;
        if (fisher.Any(f => f.Count != steps)) throw new ArgumentException("every layer needs a Fisher value at every step.", nameof(fisher));
        if (parameters.Any(n => n <= 0)) throw new ArgumentException("every layer needs a positive number of weights.", nameof(parameters));
        if (fisher.SelectMany(f => f).Any(v => !(v >= 0) || double.IsInfinity(v)))
            throw new ArgumentException("Fisher values must be finite and non-negative.", nameof(fisher));
        var perWeight = fisher.Select((f, l) => f.Select(v => v / parameters[l]).ToArray()).ToArray();
        double mean = perWeight.SelectMany(f => f).Average();
        return Enumerable.Range(0, steps)
            .Select(t => perWeight.Select(f => mean > 0 ? f[t] / mean : 1.0).ToArray())
            .ToArray();
    }
}
