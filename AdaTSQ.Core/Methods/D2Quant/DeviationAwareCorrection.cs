using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.D2Quant;

/// <summary>
/// D²Quant's deviation-aware correction (DAC), for DiT, and the step that makes the run weight-only.
/// <para>
/// <b>What the paper does</b> (LLM): after quantization, the mean over calibration tokens of the deviation
/// <c>μ = H_fp − H_q</c> at the post-attention norm is added to that norm's bias, so that the MLP's input is on average
/// what it was in the float model.
/// </para>
/// <para>
/// <b>Where it goes in DiT.</b> DiT's post-attention norm is <c>norm2</c>, a LayerNorm without affine parameters whose
/// output is modulated: <c>u = LN(x)·(1 + scale_mlp) + shift_mlp</c>, and <c>u</c> is the input of <c>mlp.fc1</c>. A
/// bias added to <c>LN(x)</c> before the modulation would be multiplied by the per-sample <c>1 + scale_mlp</c>, so it is
/// not a constant; a constant added to <c>u</c> is exactly a constant added to <c>shift_mlp</c>, i.e. to the
/// <c>shift_mlp</c> slice (rows <c>3H … 4H−1</c>) of the bias of <c>adaLN_modulation.1</c>, whatever that layer's
/// weight (float or quantized) and whatever the class and timestep. So DAC measures <c>μ = E[u_fp] − E[u_q]</c> at
/// fc1's input (observing the layer) and adds <c>μ</c> to that bias slice. (The output projection's bias would be the
/// other candidate, but there <c>μ</c> is multiplied by the per-sample gate <c>gate_msa</c> and passes through the
/// LayerNorm, so no constant there reproduces a constant at the norm's output.)
/// </para>
/// <para>
/// <b>Measurement.</b> <c>E[u_fp]</c> comes from one pass of the calibration data with every layer at full precision;
/// <c>E[u_q]</c> from the quantized model (weights at the plan's spec) — with <see cref="D2QuantOptions.SequentialCorrection"/>
/// one pass per block, with the earlier blocks already corrected. A trajectory source runs the model's own trajectory,
/// so the quantized passes see the inputs the quantized model produces. The per-channel gate <c>μ²/(μ²+σ²)</c> the
/// paper reports is not applied (it needs paired per-token deviations; see <c>docs/d2quant.md</c>).
/// </para>
/// <para>
/// It is a post-quantization step (<see cref="IPostQuantizationStep"/>): it runs after every layer is quantized and the
/// final policy is set, so it can follow any quantizer, layer transform or policy search of the plan. As an
/// <see cref="IModelChangingTransform"/> it lets <see cref="QuantizationResult.Restore"/> (and a failed run) put the
/// modulation biases back bit for bit. Its checks at <c>Build()</c> refuse quantized activations (D²Quant is weight-only).
/// </para>
/// </summary>
public sealed class DeviationAwareCorrection : IPostQuantizationStep, IModelChangingTransform, IDisposable
{
    /// <summary>The name suffix of the layer whose input DAC corrects (the post-attention norm's modulated output).</summary>
    public const string TargetSuffix = "mlp.fc1";

    /// <summary>The name suffix, under the same block, of the adaLN modulation whose shift_mlp slice takes the correction.</summary>
    public const string ModulationSuffix = "adaLN_modulation.1";

    /// <summary>The chunk of the six adaLN outputs (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) that is shift_mlp.</summary>
    public const int ShiftMlpChunk = 3;

    private readonly D2QuantOptions _options;
    private readonly nn.Module? _model;
    private readonly ICalibrationSource? _calibration;
    private readonly List<(Tensor Parameter, Tensor Original)> _originals = [];
    private readonly List<DeviationCorrectionReport> _reports = [];

    /// <summary>Creates the step.</summary>
    /// <param name="options">D²Quant's options (only <see cref="D2QuantOptions.Dac"/> and <see cref="D2QuantOptions.SequentialCorrection"/> matter here).</param>
    /// <param name="model">The DiT being quantized (needed for DAC: its adaLN modulation biases take the correction).</param>
    /// <param name="calibration">The calibration data DAC measures the deviation on (needed for DAC).</param>
    public DeviationAwareCorrection(D2QuantOptions options, nn.Module? model, ICalibrationSource? calibration)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _model = model;
        _calibration = calibration;
    }

    /// <inheritdoc />
    public string Name => "D²Quant DAC";

    /// <summary>One report per corrected block, in model order (empty before the run or without DAC).</summary>
    public IReadOnlyList<DeviationCorrectionReport> Reports => _reports;

    /// <inheritdoc />
    public bool HasChangedModel => _originals.Count > 0;

    /// <inheritdoc />
    public void RevertModelChanges()
    {
        using var noGrad = torch.no_grad();
        foreach (var (parameter, original) in _originals)
        {
            parameter.copy_(original);
            original.Dispose();
        }
        _originals.Clear();
    }

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate, bool hasCalibrationData)
    {
        var p = new List<string>(_options.FindProblems());
        if (weightTemplate is not { IsEnabled: true })
            p.Add("D²Quant quantizes weights: call Weights(...) with fewer than 16 bits.");
        if (activationTemplate is { IsEnabled: true })
            p.Add($"D²Quant is weight-only, but activations are quantized ({activationTemplate}): leave Activations(...) out or give 16 bits.");
        if (_options.Dac && _model is null)
            p.Add("D²Quant's DAC needs the model (its adaLN modulation biases take the correction): pass it to UseD2Quant, or set Dac = false.");
        if (_options.Dac && _calibration is null)
            p.Add("D²Quant's DAC needs calibration data to measure the deviation on: pass a calibration source to UseD2Quant, or set Dac = false.");
        if (_options.Dac && _calibration is { Count: <= 0 })
            p.Add("D²Quant's DAC calibration source has no item.");
        return p;
    }

    /// <inheritdoc />
    /// <returns>The list of <see cref="DeviationCorrectionReport"/>s (the same as <see cref="Reports"/>).</returns>
    public object? Run(PostQuantizationContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var policy = context.Policy;
        if (!_options.Dac) return _reports;
        var targets = FindTargets(context.Layers, context.Logger);
        if (targets.Count == 0)
        {
            context.Logger.LogWarning("D²Quant DAC: no quantized '*{Target}' layer with a '{Modulation}' beside it; nothing corrected.", TargetSuffix, ModulationSuffix);
            return _reports;
        }
        var saved = context.Layers.Select(l => (Layer: l, l.Policy, l.DefaultConfig, l.Observer)).ToList();
        try
        {
            int total = 1 + (_options.SequentialCorrection ? targets.Count : 1), done = 0;
            foreach (var l in context.Layers) { l.Policy = null; l.DefaultConfig = LayerQuantConfig.FullPrecision; }
            var fp = MeasureInputMeans(_calibration!, targets.Select(t => t.Layer).ToList(), cancellationToken);
            progress?.Report(new QuantizationProgress("d2quant-dac", ++done, total, "full-precision pass"));
            foreach (var l in context.Layers) l.Policy = policy;
            var batches = _options.SequentialCorrection ? targets.Select(t => new[] { t }).ToList() : [targets.ToArray()];
            foreach (var batch in batches)
            {
                var q = MeasureInputMeans(_calibration!, batch.Select(t => t.Layer).ToList(), cancellationToken);
                using var noGrad = torch.no_grad();
                foreach (var t in batch)
                {
                    using var scope = torch.NewDisposeScope();
                    var mu = fp[t.Layer.LayerName] - q[t.Layer.LayerName];
                    long h = t.Layer.InFeatures;
                    _originals.Add((t.Bias, t.Bias.detach().clone().DetachFromDisposeScope()));
                    t.Bias.narrow(0, ShiftMlpChunk * h, h).add_(mu.to(t.Bias.dtype));
                    double rms(Tensor v) => v.to(ScalarType.Float64).square().mean().sqrt().item<double>();
                    _reports.Add(new DeviationCorrectionReport(t.Layer.LayerName, t.Modulation, rms(mu), rms(fp[t.Layer.LayerName])));
                    context.Logger.LogInformation("D²Quant DAC {Layer}: rms mean deviation {Mu:G3} (rms float mean {Fp:G3}) added to {Modulation}'s shift_mlp",
                        t.Layer.LayerName, _reports[^1].RmsCorrection, _reports[^1].RmsFloatMean, t.Modulation);
                }
                foreach (var v in q.Values) v.Dispose();
                progress?.Report(new QuantizationProgress("d2quant-dac", ++done, total, batch[^1].Layer.LayerName));
            }
            foreach (var v in fp.Values) v.Dispose();
        }
        finally
        {
            foreach (var (layer, p, config, observer) in saved)
            {
                layer.Policy = p;
                layer.DefaultConfig = config;
                layer.Observer = observer;
            }
        }
        return _reports;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (_, original) in _originals) original.Dispose();
        _originals.Clear();
    }

    private sealed record Target(QuantLinear Layer, string Modulation, Tensor Bias);

    private List<Target> FindTargets(IReadOnlyList<QuantLinear> layers, ILogger logger)
    {
        var modules = _model!.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var targets = new List<Target>();
        foreach (var layer in layers.Where(l => l.LayerName.EndsWith(TargetSuffix, StringComparison.Ordinal)))
        {
            string name = layer.LayerName[..^TargetSuffix.Length] + ModulationSuffix;
            Tensor? bias = modules.TryGetValue(name, out var m) ? m switch
            {
                QuantLinear q => q.Bias,
                TorchSharp.Modules.Linear lin => lin.bias,
                _ => null,
            } : null;
            if (bias is null || bias.Dimensions != 1 || bias.shape[0] != 6 * layer.InFeatures)
            {
                logger.LogWarning("D²Quant DAC: {Layer} has no '{Modulation}' with a bias of 6 × {In} outputs beside it; not corrected.", layer.LayerName, name, layer.InFeatures);
                continue;
            }
            targets.Add(new Target(layer, name, bias));
        }
        return targets;
    }

    /// <summary>
    /// The mean input (float64 <c>[in]</c>, over every token of every call) of each of <paramref name="layers"/> over one run
    /// of <paramref name="source"/>, with the layers' current configs. The caller disposes the tensors.
    /// </summary>
    internal static Dictionary<string, Tensor> MeasureInputMeans(ICalibrationSource source, IReadOnlyList<QuantLinear> layers, CancellationToken cancellationToken)
    {
        var observer = new MeanObserver();
        var previous = layers.Select(l => l.Observer).ToList();
        try
        {
            foreach (var l in layers) l.Observer = observer;
            for (int i = 0; i < source.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                source.Run(i, cancellationToken);
            }
        }
        finally
        {
            for (int i = 0; i < layers.Count; i++) layers[i].Observer = previous[i];
        }
        var means = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var l in layers)
        {
            if (!observer.Sums.TryGetValue(l.LayerName, out var sum))
            {
                foreach (var t in means.Values) t.Dispose();
                observer.Dispose();
                throw new CalibrationException($"layer '{l.LayerName}': D²Quant's DAC saw no input of it during calibration.");
            }
            means[l.LayerName] = sum.Sum.to(ScalarType.Float64).div((double)sum.Rows).DetachFromDisposeScope();
        }
        observer.Dispose();
        return means;
    }

    // Sums every observed input row per layer in float64.
    private sealed class MeanObserver : ILayerInputObserver, IDisposable
    {
        public Dictionary<string, (Tensor Sum, long Rows)> Sums { get; } = new(StringComparer.Ordinal);

        public void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step)
        {
            using var noGrad = torch.no_grad();
            long cols = input.shape[^1];
            long rows = input.numel() / Math.Max(cols, 1);
            var s = input.detach().reshape(-1, cols).to(ScalarType.Float64).sum(dim: 0).to(ScalarType.Float64).cpu().DetachFromDisposeScope();
            if (Sums.TryGetValue(layer.LayerName, out var old))
            {
                Sums[layer.LayerName] = ((old.Sum + s).DetachFromDisposeScope(), old.Rows + rows);
                old.Sum.Dispose();
                s.Dispose();
            }
            else Sums[layer.LayerName] = (s, rows);
        }

        public void Dispose()
        {
            foreach (var (sum, _) in Sums.Values) sum.Dispose();
            Sums.Clear();
        }
    }
}

/// <summary>What DAC added to one block.</summary>
/// <param name="Layer">The layer whose input was corrected (<c>blocks.N.mlp.fc1</c>).</param>
/// <param name="Modulation">The adaLN modulation whose shift_mlp bias took the correction.</param>
/// <param name="RmsCorrection">Root mean square over channels of the correction <c>μ = E[u_fp] − E[u_q]</c>.</param>
/// <param name="RmsFloatMean">Root mean square over channels of <c>E[u_fp]</c>, for scale.</param>
public sealed record DeviationCorrectionReport(string Layer, string Modulation, double RmsCorrection, double RmsFloatMean);
