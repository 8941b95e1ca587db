using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Search;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// A validated quantization plan (made by <see cref="QuantizationBuilder.Build"/>). <see cref="Apply"/>
/// runs it on the model in this order: check every selected layer → swap in <see cref="QuantLinear"/>s
/// → calibrate → quantize each weight once per spec its policy uses → set static ranges and the
/// policy → report the error per layer. Any failure after the swap puts the original layers back.
/// </summary>
public sealed class QuantizationPipeline
{
    private readonly ILogger _logger;

    internal QuantizationPipeline(nn.Module model, LayerSelector selector, ITimestepPolicy policy, IQuantizer quantizer,
        ICalibrator? calibrator, ICalibrationSource? source, bool outputErrorReport, ILogger? logger, IProgress<QuantizationProgress>? progress,
        double? smoothingAlpha = null, int staticRangeGroups = 0, BlockwiseCalibration? blockwise = null,
        (SearchTrajectories Trajectories, BitWidthSearchOptions Options)? search = null)
    {
        Search = search;
        SmoothingAlpha = smoothingAlpha;
        StaticRangeGroups = staticRangeGroups;
        Blockwise = blockwise;
        OutputErrorReport = outputErrorReport;
        Model = model;
        Selector = selector;
        Policy = policy;
        Quantizer = quantizer;
        Calibrator = calibrator;
        Source = source;
        _logger = logger ?? NullLogger.Instance;
        Progress = progress;
    }

    /// <summary>The model the plan applies to.</summary>
    public nn.Module Model { get; }

    /// <summary>Which linear layers are quantized.</summary>
    public LayerSelector Selector { get; }

    /// <summary>The policy the quantized layers will follow.</summary>
    public ITimestepPolicy Policy { get; }

    /// <summary>The weight quantizer.</summary>
    public IQuantizer Quantizer { get; }

    /// <summary>The calibrator, or null when the plan needs no data.</summary>
    public ICalibrator? Calibrator { get; }

    /// <summary>The calibration data, or null.</summary>
    public ICalibrationSource? Source { get; }

    /// <summary>Whether layer reports include the output error on the calibration data (needs second moments).</summary>
    public bool OutputErrorReport { get; }

    /// <summary>SmoothQuant migration strength α (null = no smoothing).</summary>
    public double? SmoothingAlpha { get; }

    /// <summary>Static activation ranges per this many timestep groups (0 = one range for all steps).</summary>
    public int StaticRangeGroups { get; }

    /// <summary>Block-by-block calibration settings, or null to calibrate every layer in one pass.</summary>
    public BlockwiseCalibration? Blockwise { get; }

    /// <summary>
    /// The bit-width search run after quantization, or null. With a search, <see cref="Policy"/> is the search
    /// space (every layer gets every bit-width) and the result's policy is the one the search found.
    /// </summary>
    public (SearchTrajectories Trajectories, BitWidthSearchOptions Options)? Search { get; }

    private IProgress<QuantizationProgress>? Progress { get; }

    /// <summary>Quantizes the model in place and reports what it cost.</summary>
    /// <exception cref="QuantizationConfigurationException">Some selected layer cannot take its config (nothing is changed).</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the model is restored.</exception>
    public QuantizationResult Apply(CancellationToken cancellationToken = default)
    {
        var watch = Stopwatch.StartNew();
        var selected = ModelSurgery.FindLinears(Model).Where(l => Selector.Matches(l.Name)).ToList();
        CheckLayers(selected);

        var surgery = ModelSurgery.ReplaceLinears(Model, Selector);
        _logger.LogInformation("Quantizing {Model} with {Quantizer}, policy {Policy}: {Surgery}", Model.GetType().Name, Quantizer.Name, Policy.Name, surgery);
        var layers = ModelSurgery.FindQuantLinears(Model).Where(l => Selector.Matches(l.LayerName)).ToList();
        int items = 0;
        long peakBytes = 0;
        try
        {
            var reports = new List<LayerReport>();
            if (Calibrator is not null && Source is not null)
            {
                var requirements = OutputErrorReport ? Quantizer.Requirements.Union(CalibrationRequirements.SecondMoments) : Quantizer.Requirements;
                if (SmoothingAlpha is not null && StaticRangeGroups > 1)
                    requirements = requirements.Union(new CalibrationRequirements { PerStepChannelExtremes = true });
                if (Calibrator is IPreparingCalibrator preparing) preparing.Prepare(layers, Progress, cancellationToken);
                var blocks = Blockwise?.Split(layers) ?? [("(all)", layers)];
                foreach (var (block, members) in blocks)
                {
                    using var calibration = Calibrator.Calibrate(members, Source, requirements, Progress, cancellationToken);
                    items = calibration.Items;
                    peakBytes = Math.Max(peakBytes, calibration.Bytes);
                    reports.AddRange(QuantizeLayers(members, calibration, cancellationToken));
                    if (Blockwise is { FeedQuantizedOutputs: true })
                        foreach (var layer in members) layer.Policy = Policy;
                    if (blocks.Count > 1)
                        _logger.LogInformation("Block {Block}: {Layers} layers calibrated and quantized ({MB:F1} MB of statistics)", block, members.Count, calibration.Bytes / 1e6);
                }
            }
            else reports.AddRange(QuantizeLayers(layers, null, cancellationToken));
            ITimestepPolicy finalPolicy = Policy;
            BitWidthSearchResult? searched = null;
            if (Search is { } search)
            {
                var sensitivity = LayerSensitivity.FromLayers(layers, search.Options, reports, (Calibrator as FisherCalibrator)?.Fisher);
                searched = new BitWidthSearch(layers, search.Trajectories, search.Options, sensitivity, _logger).Run(Progress, cancellationToken);
                finalPolicy = searched.Best.Policy;
                reports = KeepUsedVersions(layers, finalPolicy, reports);
            }
            foreach (var layer in layers) layer.Policy = finalPolicy;
            watch.Stop();
            var result = new QuantizationResult(Model, finalPolicy, Quantizer.Name, surgery, reports, layers.Sum(l => l.FloatWeightBytes),
                layers.Sum(l => l.QuantizedWeightBytes), items, watch.Elapsed) {
                PeakCalibrationBytes = peakBytes, Search = searched,
                WeightVersions = layers.Select(l => new LayerWeightVersions(l.LayerName,
                    l.WeightVersions.OrderBy(s => s.Bits).ThenBy(s => s.ToString(), StringComparer.Ordinal).ToList(), l.QuantizedWeightBytes)).ToList(),
            };
            _logger.LogInformation("Quantized {Layers} layers in {Seconds:F1} s; weights {Float:N0} → {Quantized:N0} bytes; peak calibration statistics {Peak:N0} bytes",
                layers.Count, watch.Elapsed.TotalSeconds, result.FloatWeightBytes, result.QuantizedWeightBytes, peakBytes);
            return result;
        }
        catch
        {
            ModelSurgery.Restore(Model);
            throw;
        }
    }

    /// <summary>Drops every weight version <paramref name="policy"/> does not use; returns the reports of the kept ones.</summary>
    private static List<LayerReport> KeepUsedVersions(IReadOnlyList<QuantLinear> layers, ITimestepPolicy policy, List<LayerReport> reports)
    {
        var kept = new HashSet<(string, QuantSpec)>();
        foreach (var layer in layers)
        {
            var used = policy.ConfigsFor(layer.LayerName).Select(c => c.Weight).ToHashSet();
            foreach (var spec in layer.WeightVersions.ToList())
                if (!used.Contains(spec)) layer.RemoveWeightVersion(spec);
            foreach (var spec in used) kept.Add((layer.LayerName, spec));
        }
        return reports.Where(r => kept.Contains((r.Name, r.Config.Weight))).ToList();
    }

    private void CheckLayers(List<(string Name, TorchSharp.Modules.Linear Layer)> selected)
    {
        var problems = new List<string>();
        if (selected.Count == 0)
        {
            var all = ModelSurgery.FindLinears(Model).Select(l => l.Name).ToList();
            int quantized = ModelSurgery.FindQuantLinears(Model).Count;
            if (quantized > 0 && all.Count == 0)
                problems.Add($"{Model.GetType().Name} is already quantized ({quantized} QuantLinear layers): call Restore() on the previous result first.");
            else
                problems.Add(all.Count == 0
                    ? $"{Model.GetType().Name} has no Linear layer to quantize."
                    : $"no Linear layer matches {Selector}; the model's linear layers are: {string.Join(", ", all.Take(20))}{(all.Count > 20 ? ", …" : "")}.");
        }
        var selectedNames = selected.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var unknown = Policy.NamedLayers.Where(n => !selectedNames.Contains(n)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
        {
            // Every unknown name is listed: a policy made for another model is easier to recognise that way.
            var inModel = ModelSurgery.FindLinears(Model).Select(l => l.Name).ToHashSet(StringComparer.Ordinal);
            var listed = unknown.Select(n => inModel.Contains(n) ? $"{n} (in the model, but the selection is '{Selector}')" : n);
            var some = selected.Select(s => s.Name).ToList();
            problems.Add($"policy '{Policy.Name}' configures {unknown.Count} layer(s) that are not among the {some.Count} selected linear layers: {string.Join(", ", listed)}; " +
                $"the selected layers are: {string.Join(", ", some.Take(12))}{(some.Count > 12 ? $", … ({some.Count - 12} more)" : "")}.");
        }
        foreach (var (name, layer) in selected)
        {
            foreach (var config in Policy.ConfigsFor(name))
            {
                problems.AddRange(config.Weight.FindProblems(QuantTarget.Weight, layer.in_features).Select(p => $"layer '{name}' ({config}): {p}"));
                problems.AddRange(config.Activation.FindProblems(QuantTarget.Activation, layer.in_features).Select(p => $"layer '{name}' ({config}): {p}"));
                if (config.Activation is { IsEnabled: true, Dynamic: false } && Source is null)
                    problems.Add($"layer '{name}' ({config}): static activation ranges need calibration data.");
            }
            if (WeightChecks.FindProblem(name, layer.weight) is { } bad) problems.Add(bad);
        }
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
    }

    private List<LayerReport> QuantizeLayers(IReadOnlyList<QuantLinear> layers, CalibrationResult? calibration, CancellationToken cancellationToken)
    {
        var reports = new List<LayerReport>();
        int done = 0, total = layers.Sum(l => Policy.ConfigsFor(l.LayerName).Count);
        foreach (var layer in layers)
        {
            var raw = calibration?.For(layer.LayerName);
            var configs = Policy.ConfigsFor(layer.LayerName);
            LayerStatistics? smoothed = null;
            try
            {
                if (SmoothingAlpha is { } alpha && configs.Any(c => c.Activation.IsEnabled))
                {
                    if (raw is not { HasData: true, ChannelAbsMax: not null })
                        throw new CalibrationException($"layer '{layer.LayerName}': SmoothQuant needs the per-channel input maxima from calibration, but the layer saw no input.");
                    using var factors = SmoothingFactors(layer, raw.ChannelAbsMax, alpha);
                    layer.SetInputSmoothing(factors);
                    smoothed = raw.Smoothed(factors);
                }
                var stats = smoothed ?? raw;
                using var weight = layer.SmoothedWeight();
                foreach (var config in configs)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (config.Weight.IsEnabled && !layer.HasWeightVersion(config.Weight))
                    {
                        if (Quantizer.Requirements.InputSecondMoments && stats is not { HasData: true })
                            throw new CalibrationException($"layer '{layer.LayerName}': {Quantizer.Name} needs calibration statistics, but the layer saw no input during calibration.");
                        layer.SetWeightVersion(Quantizer.Quantize(layer.LayerName, weight, config.Weight, stats, cancellationToken));
                    }
                    if (config.Activation is { IsEnabled: true, Dynamic: false }) SetStaticRanges(layer, config.Activation, stats);
                    if (config.Weight.IsEnabled) reports.Add(Report(layer, weight, config, stats));
                    Progress?.Report(new QuantizationProgress("quantize", ++done, total, layer.LayerName));
                }
            }
            finally
            {
                smoothed?.Dispose();
            }
        }
        return reports;
    }

    /// <summary>SmoothQuant: s_j = max|X_j|^α / max|W_j|^(1−α), both clamped to ≥ 1e-5.</summary>
    private static Tensor SmoothingFactors(QuantLinear layer, Tensor channelAbsMax, double alpha)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = channelAbsMax.to(ScalarType.Float64, layer.Weight.device).clamp_min(1e-5);
        var w = layer.Weight.detach().abs().amax([0]).to(ScalarType.Float64).clamp_min(1e-5);
        return (x.pow(alpha) / w.pow(1 - alpha)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    private void SetStaticRanges(QuantLinear layer, QuantSpec spec, LayerStatistics? stats)
    {
        if (stats is not { HasData: true })
            throw new CalibrationException($"layer '{layer.LayerName}': static activation range needs calibration input, but the layer saw none.");
        layer.SetStaticInputRange(spec, stats.InputMin, stats.InputMax);
        if (StaticRangeGroups <= 1 || stats.Steps.Count == 0) return;
        int steps = stats.Steps.Keys.Max() + 1;
        int groups = Math.Min(StaticRangeGroups, steps);
        for (int g = 0; g < groups; g++)
        {
            int first = g * steps / groups, last = (g + 1) * steps / groups - 1;
            var seen = stats.Steps.Where(p => p.Key >= first && p.Key <= last).Select(p => p.Value).ToList();
            if (seen.Count == 0) continue;
            var range = seen.Aggregate((a, b) => a.Merge(b));
            layer.SetStaticInputRange(spec, range.Min, range.Max, first, last);
        }
    }

    private static LayerReport Report(QuantLinear layer, Tensor weight, LayerQuantConfig config, LayerStatistics? stats)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var q = layer.GetWeightVersion(config.Weight);
        var w = weight.detach().to(ScalarType.Float64);
        var delta = w - q.Dequantize().to(ScalarType.Float64);
        double weightError = delta.norm().item<double>() / Math.Max(w.norm().item<double>(), double.Epsilon);
        double? outputError = null, squaredError = null;
        if (stats?.SecondMoment is { } h)
        {
            double err = (delta.mm(h) * delta).sum().item<double>();
            double reference = (w.mm(h) * w).sum().item<double>();
            outputError = reference > 0 ? Math.Sqrt(Math.Max(err, 0) / reference) : null;
            squaredError = stats.SecondMomentWeight > 0 ? Math.Max(err, 0) / stats.SecondMomentWeight : null;
        }
        return new LayerReport(layer.LayerName, layer.InFeatures, layer.OutFeatures, config, weightError, outputError, q.StorageBytes) { OutputSquaredError = squaredError };
    }
}
