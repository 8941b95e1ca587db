using System.Diagnostics;
using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Pipeline.Stages;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Pipeline;

/// <summary>
/// A validated quantization plan (made by <see cref="QuantizationBuilder.Build"/>). <see cref="Apply"/>
/// runs it on the model, stage by stage, in the order the data flow: check every selected layer → swap in
/// <see cref="QuantLinear"/>s → capture calibration statistics (<see cref="CaptureStage"/>; a Fisher-weighted
/// calibrator first estimates its temporal Fisher on the full-precision model) → quantize each weight once per
/// spec its policy uses (<see cref="QuantizeStage"/>, after the plan's layer transforms) → search the policy
/// (<see cref="SearchStage"/>, when the plan has one) → set the policy → run the post-quantization steps
/// (<see cref="IPostQuantizationStep"/>, e.g. D²Quant's correction) → report. With block-by-block calibration
/// the capture and quantize stages alternate per block. Any failure after the swap puts the original layers back and
/// reverts what the transforms changed elsewhere in the model (<see cref="IModelChangingTransform"/>).
/// </summary>
public sealed class QuantizationPipeline
{
    private readonly ILogger _logger;
    private readonly IProgress<QuantizationProgress>? _progress;
    private readonly QuantSpec? _weightTemplate;
    private readonly QuantSpec? _activationTemplate;

    internal QuantizationPipeline(nn.Module model, LayerSelector selector, ITimestepPolicy policy, IQuantizer quantizer,
        ICalibrator? calibrator, ICalibrationSource? source, bool outputErrorReport, ILogger? logger, IProgress<QuantizationProgress>? progress,
        IReadOnlyList<ILayerTransform> transforms, int staticRangeGroups, BlockwiseCalibration? blockwise, IPolicySearch? search,
        QuantSpec? weightTemplate, QuantSpec? activationTemplate, string? calibrationCache, IReadOnlyList<IPostQuantizationStep> postSteps)
    {
        PostQuantizationSteps = postSteps;
        Model = model;
        Selector = selector;
        Policy = policy;
        Quantizer = quantizer;
        Calibrator = calibrator;
        Source = source;
        OutputErrorReport = outputErrorReport;
        Transforms = transforms;
        StaticRangeGroups = staticRangeGroups;
        Blockwise = blockwise;
        Search = search;
        CalibrationCache = calibrationCache;
        _weightTemplate = weightTemplate;
        _activationTemplate = activationTemplate;
        _logger = logger ?? NullLogger.Instance;
        _progress = progress;
    }

    /// <summary>The model the plan applies to.</summary>
    public nn.Module Model { get; }

    /// <summary>Which linear layers are quantized.</summary>
    public LayerSelector Selector { get; }

    /// <summary>The policy the quantized layers will follow (with a <see cref="Search"/>: its search space).</summary>
    public ITimestepPolicy Policy { get; }

    /// <summary>The weight quantizer.</summary>
    public IQuantizer Quantizer { get; }

    /// <summary>The calibrator, or null when the plan needs no data.</summary>
    public ICalibrator? Calibrator { get; }

    /// <summary>The calibration data, or null.</summary>
    public ICalibrationSource? Source { get; }

    /// <summary>Whether layer reports include the output error on the calibration data (needs second moments).</summary>
    public bool OutputErrorReport { get; }

    /// <summary>The layer transforms applied before quantization, in order (e.g. SmoothQuant).</summary>
    public IReadOnlyList<ILayerTransform> Transforms { get; }

    /// <summary>Static activation ranges per this many timestep groups (0 = one range for all steps).</summary>
    public int StaticRangeGroups { get; }

    /// <summary>Block-by-block calibration settings, or null to calibrate every layer in one pass.</summary>
    public BlockwiseCalibration? Blockwise { get; }

    /// <summary>The policy search run after quantization, or null.</summary>
    public IPolicySearch? Search { get; }

    /// <summary>The steps run after quantization and the policy search, in order (e.g. D²Quant's DAC).</summary>
    public IReadOnlyList<IPostQuantizationStep> PostQuantizationSteps { get; }

    /// <summary>Every step of the plan that can change the model outside its quantized layers, in the order they act.</summary>
    private List<IModelChangingTransform> ModelChangingSteps =>
        Transforms.OfType<IModelChangingTransform>().Concat(PostQuantizationSteps.OfType<IModelChangingTransform>()).ToList();

    /// <summary>Where calibration statistics are cached, or null.</summary>
    public string? CalibrationCache { get; }

    /// <summary>What the capture stage collects: the quantizer's needs, the report's, and every transform's.</summary>
    public CalibrationRequirements Requirements =>
        Transforms.Aggregate(OutputErrorReport ? Quantizer.Requirements.Union(CalibrationRequirements.SecondMoments) : Quantizer.Requirements,
            (r, t) => r.Union(t.Requirements(StaticRangeGroups > 1)));

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
        var quantize = new QuantizeStage(Policy, Quantizer, Transforms, StaticRangeGroups, _progress);
        int items = 0;
        long peakBytes = 0;
        try
        {
            var reports = new List<LayerReport>();
            if (Calibrator is not null && Source is not null)
            {
                var capture = new CaptureStage(Calibrator, Source, Requirements, CalibrationCache, _logger, _progress);
                var blocks = Blockwise?.Split(layers) ?? [("(all)", layers)];
                capture.Prepare(layers, blocks.Select(b => (b.Block, (IReadOnlyList<IQuantizableLayer>)b.Layers)).ToList(), cancellationToken);
                foreach (var (block, members) in blocks)
                {
                    using var calibration = capture.Run(block, members, cancellationToken);
                    items = calibration.Items;
                    peakBytes = Math.Max(peakBytes, calibration.Bytes);
                    reports.AddRange(quantize.Run(members, calibration, cancellationToken));
                    if (Blockwise is { FeedQuantizedOutputs: true })
                        foreach (var layer in members) layer.Policy = Policy;
                    if (blocks.Count > 1)
                        _logger.LogInformation("Block {Block}: {Layers} layers calibrated and quantized ({MB:F1} MB of statistics)", block, members.Count, calibration.Bytes / 1e6);
                }
            }
            else reports.AddRange(quantize.Run(layers, null, cancellationToken));
            ITimestepPolicy finalPolicy = Policy;
            PolicySearchOutcome? searched = null;
            if (Search is not null)
            {
                var stage = new SearchStage(Search, _weightTemplate, _activationTemplate, _logger, _progress);
                (searched, var kept) = stage.Run(layers, reports, Calibrator, cancellationToken);
                finalPolicy = searched.Policy;
                reports = kept.ToList();
            }
            foreach (var layer in layers) layer.Policy = finalPolicy;
            var postReports = new List<PostQuantizationReport>();
            foreach (var step in PostQuantizationSteps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                _logger.LogInformation("Post-quantization step {Step}", step.Name);
                var report = step.Run(new PostQuantizationContext(Model, layers, finalPolicy, reports, Source, _logger), _progress, cancellationToken);
                postReports.Add(new PostQuantizationReport(step.Name, report));
            }
            watch.Stop();
            var result = new QuantizationResult(Model, finalPolicy, Quantizer.Name, surgery, reports, layers.Sum(l => l.FloatWeightBytes),
                layers.Sum(l => l.QuantizedWeightBytes), items, watch.Elapsed) {
                PeakCalibrationBytes = peakBytes, SearchOutcome = searched, ModelChanges = ModelChangingSteps,
                PostQuantizationReports = postReports,
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
            QuantizationResult.RevertModelChanges(ModelChangingSteps);
            throw;
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
}
