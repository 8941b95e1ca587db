using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
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
        ICalibrator? calibrator, ICalibrationSource? source, bool outputErrorReport, ILogger? logger, IProgress<QuantizationProgress>? progress)
    {
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
        CalibrationResult? calibration = null;
        try
        {
            if (Calibrator is not null && Source is not null)
            {
                var requirements = OutputErrorReport ? Quantizer.Requirements.Union(CalibrationRequirements.SecondMoments) : Quantizer.Requirements;
                calibration = Calibrator.Calibrate(layers, Source, requirements, Progress, cancellationToken);
            }
            var reports = QuantizeLayers(layers, calibration, cancellationToken);
            foreach (var layer in layers) layer.Policy = Policy;
            watch.Stop();
            var result = new QuantizationResult(Model, Policy, Quantizer.Name, surgery, reports, layers.Sum(l => l.FloatWeightBytes),
                layers.Sum(l => l.QuantizedWeightBytes), calibration?.Items ?? 0, watch.Elapsed);
            _logger.LogInformation("Quantized {Layers} layers in {Seconds:F1} s; weights {Float:N0} → {Quantized:N0} bytes",
                layers.Count, watch.Elapsed.TotalSeconds, result.FloatWeightBytes, result.QuantizedWeightBytes);
            return result;
        }
        catch
        {
            ModelSurgery.Restore(Model);
            throw;
        }
        finally
        {
            calibration?.Dispose();
        }
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

    private List<LayerReport> QuantizeLayers(List<QuantLinear> layers, CalibrationResult? calibration, CancellationToken cancellationToken)
    {
        var work = layers.SelectMany(l => Policy.ConfigsFor(l.LayerName).Select(c => (Layer: l, Config: c))).ToList();
        var reports = new List<LayerReport>();
        int done = 0;
        foreach (var (layer, config) in work)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var stats = calibration?.For(layer.LayerName);
            if (config.Weight.IsEnabled && !layer.HasWeightVersion(config.Weight))
            {
                if (Quantizer.Requirements.InputSecondMoments && stats is not { HasData: true })
                    throw new CalibrationException($"layer '{layer.LayerName}': {Quantizer.Name} needs calibration statistics, but the layer saw no input during calibration.");
                var q = Quantizer.Quantize(layer.LayerName, layer.Weight, config.Weight, stats, cancellationToken);
                layer.SetWeightVersion(q);
            }
            if (config.Activation is { IsEnabled: true, Dynamic: false })
            {
                if (stats is not { HasData: true })
                    throw new CalibrationException($"layer '{layer.LayerName}': static activation range needs calibration input, but the layer saw none.");
                layer.SetStaticInputRange(config.Activation, stats.InputMin, stats.InputMax);
            }
            if (config.Weight.IsEnabled) reports.Add(Report(layer, config, stats));
            Progress?.Report(new QuantizationProgress("quantize", ++done, work.Count, layer.LayerName));
        }
        return reports;
    }

    private static LayerReport Report(QuantLinear layer, LayerQuantConfig config, LayerStatistics? stats)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var q = layer.GetWeightVersion(config.Weight);
        var w = layer.Weight.detach().to(ScalarType.Float64);
        var delta = w - q.Dequantize().to(ScalarType.Float64);
        double weightError = delta.norm().item<double>() / Math.Max(w.norm().item<double>(), double.Epsilon);
        double? outputError = null;
        if (stats?.SecondMoment is { } h)
        {
            double err = (delta.mm(h) * delta).sum().item<double>();
            double reference = (w.mm(h) * w).sum().item<double>();
            outputError = reference > 0 ? Math.Sqrt(Math.Max(err, 0) / reference) : null;
        }
        return new LayerReport(layer.LayerName, layer.InFeatures, layer.OutFeatures, config, weightError, outputError, q.StorageBytes);
    }
}
