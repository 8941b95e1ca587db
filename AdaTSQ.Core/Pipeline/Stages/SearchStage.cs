using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;

namespace AdaTSQ.Pipeline.Stages;

/// <summary>
/// Stage 4 of a run, when the plan has a policy search: runs the <see cref="IPolicySearch"/> on the quantized
/// layers, then drops every weight version the chosen policy does not use. Input: the layers (holding every
/// version of the search space) and the quantize stage's reports. Output: the chosen policy, the search's
/// report, and the reports of the versions kept.
/// </summary>
public sealed class SearchStage
{
    private readonly IPolicySearch _search;
    private readonly QuantSpec? _weightTemplate;
    private readonly QuantSpec? _activationTemplate;
    private readonly ILogger _logger;
    private readonly IProgress<QuantizationProgress>? _progress;

    /// <summary>Creates the stage.</summary>
    public SearchStage(IPolicySearch search, QuantSpec? weightTemplate, QuantSpec? activationTemplate, ILogger logger, IProgress<QuantizationProgress>? progress)
    {
        _search = search ?? throw new ArgumentNullException(nameof(search));
        _weightTemplate = weightTemplate;
        _activationTemplate = activationTemplate;
        _logger = logger ?? throw new ArgumentNullException(nameof(logger));
        _progress = progress;
    }

    /// <summary>Runs the search and keeps only the weight versions its policy uses.</summary>
    public (PolicySearchOutcome Outcome, IReadOnlyList<LayerReport> Reports) Run(IReadOnlyList<QuantLinear> layers, IReadOnlyList<LayerReport> reports,
        ICalibrator? calibrator, CancellationToken cancellationToken)
    {
        var outcome = _search.Run(new PolicySearchContext(layers, reports, calibrator, _weightTemplate, _activationTemplate, _logger), _progress, cancellationToken);
        return (outcome, KeepUsedVersions(layers, outcome.Policy, reports));
    }

    /// <summary>Drops every weight version <paramref name="policy"/> does not use; returns the reports of the kept ones.</summary>
    private static List<LayerReport> KeepUsedVersions(IReadOnlyList<QuantLinear> layers, ITimestepPolicy policy, IReadOnlyList<LayerReport> reports)
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
}
