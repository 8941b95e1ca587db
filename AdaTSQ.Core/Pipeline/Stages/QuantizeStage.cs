using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Pipeline.Stages;

/// <summary>
/// Stage 3 of a run (after capture and, for AdaTSQ, the Fisher estimate): for each layer, apply the plan's
/// layer transforms (e.g. SmoothQuant), quantize its weight once per weight spec its policy uses (and once per smoothing
/// step group, when a transform set smoothing per group of steps, as ViDiT-Q does), set its
/// static activation ranges, and report the error of each version on the calibration data.
/// Input: the swapped-in layers and their calibration statistics (or none). Output: one
/// <see cref="LayerReport"/> per layer and weight version.
/// </summary>
public sealed class QuantizeStage
{
    private readonly ITimestepPolicy _policy;
    private readonly IQuantizer _quantizer;
    private readonly IReadOnlyList<ILayerTransform> _transforms;
    private readonly int _rangeGroups;
    private readonly IProgress<QuantizationProgress>? _progress;

    /// <summary>Creates the stage.</summary>
    /// <param name="policy">Which configs each layer needs (one weight version per distinct weight spec).</param>
    /// <param name="quantizer">Turns weights into integers.</param>
    /// <param name="transforms">Applied to each layer, in order, before its weight is quantized.</param>
    /// <param name="staticRangeGroups">Static activation ranges per this many groups of consecutive steps (0 or 1: one range).</param>
    /// <param name="progress">Receives one report per layer and config.</param>
    public QuantizeStage(ITimestepPolicy policy, IQuantizer quantizer, IReadOnlyList<ILayerTransform> transforms, int staticRangeGroups,
        IProgress<QuantizationProgress>? progress)
    {
        _policy = policy ?? throw new ArgumentNullException(nameof(policy));
        _quantizer = quantizer ?? throw new ArgumentNullException(nameof(quantizer));
        _transforms = transforms ?? throw new ArgumentNullException(nameof(transforms));
        _rangeGroups = staticRangeGroups;
        _progress = progress;
    }

    /// <summary>Quantizes <paramref name="layers"/> with their statistics from <paramref name="calibration"/> (null: no data).</summary>
    /// <exception cref="CalibrationException">A layer needs statistics it does not have.</exception>
    public IReadOnlyList<LayerReport> Run(IReadOnlyList<QuantLinear> layers, CalibrationResult? calibration, CancellationToken cancellationToken)
    {
        var reports = new List<LayerReport>();
        int done = 0, total = layers.Sum(l => _policy.ConfigsFor(l.LayerName).Count);
        foreach (var layer in layers)
        {
            var configs = _policy.ConfigsFor(layer.LayerName);
            var owned = new List<LayerStatistics>();
            try
            {
                var stats = calibration?.For(layer.LayerName);
                foreach (var transform in _transforms)
                    if (transform.Apply(layer, configs, stats) is { } transformed)
                    {
                        owned.Add(transformed);
                        stats = transformed;
                    }
                using var weight = layer.SmoothedWeight();
                foreach (var config in configs)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (config.Weight.IsEnabled && !layer.HasWeightVersion(config.Weight))
                    {
                        if (_quantizer.Requirements.InputSecondMoments && stats is not { HasData: true })
                            throw new CalibrationException($"layer '{layer.LayerName}': {_quantizer.Name} needs calibration statistics, but the layer saw no input during calibration.");
                        layer.SetWeightVersion(_quantizer.Quantize(layer.LayerName, weight, config.Weight, stats, cancellationToken));
                    }
                    if (config.Activation is { IsEnabled: true, Dynamic: false }) SetStaticRanges(layer, config.Activation, stats);
                    if (config.Weight.IsEnabled) reports.Add(Report(layer, weight, config, stats));
                    _progress?.Report(new QuantizationProgress("quantize", ++done, total, layer.LayerName));
                }
                // Versions whose codes are the top bits of a wider one's (nested weights) keep only their scales.
                layer.NestWeightVersions();
                QuantizeStepGroups(layer, configs, calibration?.For(layer.LayerName), cancellationToken);
            }
            finally
            {
                foreach (var s in owned) s.Dispose();
            }
        }
        return reports;
    }

    // A layer with smoothing per step group (ViDiT-Q) gets, per group, one version per weight spec, quantized from
    // W·diag(s_g)·Rᵀ; a quantizer that needs second moments gets the layer's Hessian over all steps in the group's basis.
    private void QuantizeStepGroups(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? raw, CancellationToken cancellationToken)
    {
        foreach (var (first, last) in layer.InputSmoothingGroups)
        {
            using var weight = layer.StepSmoothedWeight(first, last);
            using var smoothed = _quantizer.Requirements.InputSecondMoments && raw is { HasData: true } ? raw.Smoothed(layer.InputSmoothingAt(first)!) : null;
            using var rotated = smoothed is not null && layer.InputRotation is { } r ? smoothed.Rotated(r) : null;
            var stats = rotated ?? smoothed;
            if (_quantizer.Requirements.InputSecondMoments && stats is null)
                throw new CalibrationException($"layer '{layer.LayerName}': {_quantizer.Name} needs calibration statistics, but the layer saw no input during calibration.");
            foreach (var spec in configs.Select(c => c.Weight).Where(w => w.IsEnabled).Distinct())
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!layer.HasStepWeightVersion(spec, first, last))
                    layer.SetStepWeightVersion(_quantizer.Quantize(layer.LayerName, weight, spec, stats, cancellationToken), first, last);
            }
        }
    }

    private void SetStaticRanges(QuantLinear layer, QuantSpec spec, LayerStatistics? stats)
    {
        if (stats is not { HasData: true })
            throw new CalibrationException($"layer '{layer.LayerName}': static activation range needs calibration input, but the layer saw none.");
        layer.SetStaticInputRange(spec, stats.InputMin, stats.InputMax);
        if (_rangeGroups <= 1 || stats.Steps.Count == 0) return;
        int steps = stats.Steps.Keys.Max() + 1;
        int groups = Math.Min(_rangeGroups, steps);
        for (int g = 0; g < groups; g++)
        {
            int first = g * steps / groups, last = (g + 1) * steps / groups - 1;
            var seen = stats.Steps.Where(p => p.Key >= first && p.Key <= last).Select(p => p.Value).ToList();
            if (seen.Count == 0) continue;
            var range = seen.Aggregate((a, b) => a.Merge(b));
            layer.SetStaticInputRange(spec, range.Min, range.Max, first, last);
        }
    }

    /// <summary>The error of one weight version: relative weight error and, with second moments, the output error on the data.</summary>
    private static LayerReport Report(QuantLinear layer, Tensor weight, LayerQuantConfig config, LayerStatistics? stats)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var q = layer.GetWeightVersion(config.Weight);
        var w = weight.detach().to(ScalarType.Float64);
        var delta = w - q.Dequantize().to(ScalarType.Float64);
        double weightError = delta.norm().item<double>() / Math.Max(w.norm().item<double>(), double.Epsilon);
        double? outputError = null, squaredError = null, trace = null;
        if (stats?.SecondMoment is { } h)
        {
            double err = (delta.mm(h) * delta).sum().item<double>();
            double reference = (w.mm(h) * w).sum().item<double>();
            outputError = reference > 0 ? Math.Sqrt(Math.Max(err, 0) / reference) : null;
            squaredError = stats.SecondMomentWeight > 0 ? Math.Max(err, 0) / stats.SecondMomentWeight : null;
            trace = stats.SecondMomentWeight > 0 ? h.trace().item<double>() / stats.SecondMomentWeight : null;
        }
        return new LayerReport(layer.LayerName, layer.InFeatures, layer.OutFeatures, config, weightError, outputError, q.StorageBytes) { OutputSquaredError = squaredError, InputSecondMomentTrace = trace };
    }
}
