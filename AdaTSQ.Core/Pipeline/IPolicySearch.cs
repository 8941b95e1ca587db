using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;

namespace AdaTSQ.Pipeline;

/// <summary>
/// A search that picks the timestep policy after the weights are quantized (AdaTSQ's bit-width search is one).
/// The pipeline quantizes every layer under the search's <see cref="SearchSpace"/> (every version a policy may
/// use), runs <see cref="Run"/>, sets the policy found, and drops the weight versions it does not use.
/// Plug one in with <see cref="QuantizationBuilder.SearchPolicy"/>.
/// </summary>
public interface IPolicySearch
{
    /// <summary>A short name for logs and reports.</summary>
    string Name { get; }

    /// <summary>Configuration problems (empty when none), given the builder's weight and activation spec templates.</summary>
    IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate);

    /// <summary>The policy whose configs every searched layer is quantized under before the search.</summary>
    ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? weightTemplate, QuantSpec? activationTemplate);

    /// <summary>Runs the search on the quantized <paramref name="context"/> layers and returns the policy it picks.</summary>
    PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken);
}

/// <summary>What a <see cref="IPolicySearch"/> gets to work with.</summary>
/// <param name="Layers">The quantized layers, holding every weight version of the search space.</param>
/// <param name="Reports">The per-layer, per-version reports of the quantize stage.</param>
/// <param name="Calibrator">The calibrator that produced the statistics (e.g. to read its Fisher values), or null.</param>
/// <param name="WeightTemplate">The builder's weight spec template, or null.</param>
/// <param name="ActivationTemplate">The builder's activation spec template, or null.</param>
/// <param name="Logger">Where the search logs.</param>
public sealed record PolicySearchContext(IReadOnlyList<QuantLinear> Layers, IReadOnlyList<LayerReport> Reports, ICalibrator? Calibrator,
    QuantSpec? WeightTemplate, QuantSpec? ActivationTemplate, ILogger Logger);

/// <summary>The policy a search picked, and the search's own report (e.g. a Pareto frontier).</summary>
/// <param name="Policy">The policy the layers follow from now on.</param>
/// <param name="Report">The search's report; its type belongs to the search (AdaTSQ's is <c>BitWidthSearchResult</c>).</param>
public sealed record PolicySearchOutcome(ITimestepPolicy Policy, object? Report);
