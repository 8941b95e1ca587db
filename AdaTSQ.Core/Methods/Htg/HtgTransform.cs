using AdaTSQ.Calibration;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Htg;

/// <summary>
/// HTG (Ding et al., "Post-Training Quantization for Diffusion Transformer via Hierarchical Timestep Grouping", arXiv
/// 2503.06930): per layer, the per-step channel shifts <c>z_t = (max_t + min_t)/2</c> are grouped into contiguous timestep
/// groups (<see cref="HtgClustering"/>), each group shifts by its mean <c>z_g</c>, and a channel scale
/// <c>s = sqrt(m / max_j|W_j|)</c> from an EMA m of the shifted maxima moves the rest of the range into the weight
/// (<see cref="HtgParameters"/>). The layer then computes <c>Q((x − z_g)/s) · Q(W·diag(s))ᵀ + (b + W·z_g)</c> at a step of
/// group g (<see cref="QuantLinear.SetStepInputShift"/>, <see cref="QuantLinear.SetInputSmoothing"/>): the paper's
/// re-parameterization, done inside the layer per call instead of folded into the adaLN modulation (on the integer
/// kernels the shift does join the modulation's shift, per call). Equal to <c>x·Wᵀ + b</c> in exact arithmetic. The model
/// outside the quantized layers is not changed. Only layers with quantized activations (and matching
/// <see cref="HtgOptions.Layers"/>) are transformed.
/// </summary>
public sealed class HtgTransform : ILayerTransform
{
    private readonly LayerSelector _selector;

    /// <summary>Creates the transform with <paramref name="options"/> (defaults: see <see cref="HtgOptions"/>).</summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public HtgTransform(HtgOptions? options = null)
    {
        Options = options ?? new HtgOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        _selector = new LayerSelector(Options.Layers, []);
    }

    /// <summary>The options.</summary>
    public HtgOptions Options { get; }

    /// <inheritdoc />
    public string Name => "HTG";

    /// <inheritdoc />
    public bool SetsInputSmoothing => Options.Scale;

    /// <inheritdoc />
    public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) => new() { PerStepChannelExtremes = true };

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(bool hasCalibrationData)
    {
        var problems = Options.FindProblems().ToList();
        if (!hasCalibrationData) problems.Add("UseHtg needs calibration data over sampling trajectories (per-step channel extremes): call CalibrationData(...).");
        return problems;
    }

    /// <inheritdoc />
    /// <exception cref="CalibrationException">The layer saw no input, or no per-step channel extremes were kept.</exception>
    public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(configs);
        if (!_selector.Matches(layer.LayerName) || !configs.Any(c => c.Activation.IsEnabled)) return null;
        if (statistics is not { HasData: true })
            throw new CalibrationException($"layer '{layer.LayerName}': HTG needs calibration statistics, but the layer saw no input.");
        using var parameters = HtgParameters.Compute(statistics, layer.Weight, Options);
        if (parameters.Scale is { } s) layer.SetInputSmoothing(s);
        foreach (var (first, last, z) in parameters.Groups) layer.SetStepInputShift(z, first, last);
        if (parameters.DefaultShift is { } zAll) layer.SetInputShift(zAll);
        return Transformed(statistics, layer);
    }

    /// <summary>
    /// The statistics of the inputs a quantized call of <paramref name="layer"/> works on, <c>(x − z_g)/s</c>, from the
    /// raw <paramref name="statistics"/>: per-step channel extremes (and from them the per-step ranges, the channel
    /// extremes and the overall range) are exact. The second moment is not: without per-step channel sums,
    /// <c>Σ (x − z_g)(x − z_g)ᵀ</c> cannot be derived from <c>Σ x xᵀ</c>, so it is that of the unshifted <c>x / s</c>
    /// (an approximation GPTQ sees; documented in docs/htg.md). A new object the caller owns.
    /// </summary>
    public static LayerStatistics Transformed(LayerStatistics statistics, QuantLinear layer)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        ArgumentNullException.ThrowIfNull(layer);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var inverse = layer.InputSmoothing is { } s ? s.detach().to(ScalarType.Float32, torch.CPU).reciprocal() : torch.ones(layer.InFeatures);
        var stepChannels = new List<KeyValuePair<int, (Tensor Min, Tensor Max)>>();
        var steps = new List<KeyValuePair<int, StepRange>>();
        Tensor? cmin = null, cmax = null;
        foreach (var (k, (min, max)) in statistics.StepChannels.OrderBy(p => p.Key))
        {
            var z = layer.InputShiftAt(k)?.detach().to(ScalarType.Float32, torch.CPU);
            var lo = min.to(ScalarType.Float32, torch.CPU);
            var hi = max.to(ScalarType.Float32, torch.CPU);
            if (z is not null)
            {
                lo = lo - z;
                hi = hi - z;
            }
            lo = lo * inverse;
            hi = hi * inverse;
            cmin = cmin is null ? lo : torch.minimum(cmin, lo);
            cmax = cmax is null ? hi : torch.maximum(cmax, hi);
            stepChannels.Add(new(k, (lo.clone().DetachFromDisposeScope(), hi.clone().DetachFromDisposeScope())));
            steps.Add(new(k, new StepRange(lo.min().item<float>(), hi.max().item<float>(), statistics.Steps.TryGetValue(k, out var r) ? r.Rows : 0)));
        }
        if (cmin is null || cmax is null)
            throw new CalibrationException($"layer '{statistics.LayerName}': HTG needs the per-step channel extremes, but none were kept.");
        Tensor? secondMoment = null;
        if (statistics.SecondMoment is not null)
        {
            using var smoothed = layer.InputSmoothing is { } factors ? statistics.Smoothed(factors) : null;
            secondMoment = (smoothed ?? statistics).SecondMoment!.clone().DetachFromDisposeScope();
        }
        var absMax = torch.maximum(cmin.abs(), cmax.abs());
        double inputMin = cmin.min().item<float>(), inputMax = cmax.max().item<float>();
        return LayerStatistics.Restore(statistics.LayerName, statistics.InFeatures, statistics.CollectsSecondMoment, statistics.CollectsStepChannels,
            statistics.Calls, statistics.Rows, inputMin, inputMax, statistics.SecondMomentWeight,
            absMax.to(statistics.ChannelAbsMax?.device ?? torch.CPU).DetachFromDisposeScope(),
            cmin.to(statistics.ChannelAbsMax?.device ?? torch.CPU).DetachFromDisposeScope(),
            cmax.to(statistics.ChannelAbsMax?.device ?? torch.CPU).DetachFromDisposeScope(),
            secondMoment, steps, stepChannels);
    }
}
