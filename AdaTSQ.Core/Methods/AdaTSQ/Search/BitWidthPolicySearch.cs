using AdaTSQ.Abstractions;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// The bit-width search as the pipeline's policy search (<see cref="IPolicySearch"/>): the search space gives every
/// searched layer every bit-width (<see cref="SearchSpacePolicy"/>); after quantization, <see cref="LayerSensitivity"/>
/// (from the quantize stage's reports and, with Fisher calibration, the temporal Fisher) seeds the candidates and
/// <see cref="BitWidthSearch"/> runs the beam search. The builder's Weights(...)/Activations(...) are the templates
/// whose bits the search varies. Made by <c>SearchBitWidths(...)</c> on the builder.
/// </summary>
public sealed class BitWidthPolicySearch : IPolicySearch
{
    /// <summary>Creates the search.</summary>
    /// <param name="trajectories">What the search scores policies on.</param>
    /// <param name="options">The search's options.</param>
    /// <param name="heldOut">Optional held-out trajectories the final policy is selected on (see <see cref="BitWidthSearch"/>).</param>
    public BitWidthPolicySearch(SearchTrajectories trajectories, BitWidthSearchOptions options, SearchTrajectories? heldOut = null)
    {
        Trajectories = trajectories ?? throw new ArgumentNullException(nameof(trajectories));
        Options = options ?? throw new ArgumentNullException(nameof(options));
        HeldOut = heldOut;
    }

    /// <summary>What the search scores policies on.</summary>
    public SearchTrajectories Trajectories { get; }

    /// <summary>The held-out trajectories the final policy is selected on; null: selected on <see cref="Trajectories"/>.</summary>
    public SearchTrajectories? HeldOut { get; }

    /// <summary>The options as given (before the builder's templates are merged in).</summary>
    public BitWidthSearchOptions Options { get; }

    /// <inheritdoc />
    public string Name => "bit-width search, SearchBitWidths(...)";

    /// <summary>The options with the builder's spec templates merged in: an enabled weight template, any activation template.</summary>
    public BitWidthSearchOptions Merged(QuantSpec? weightTemplate, QuantSpec? activationTemplate) => Options with
    {
        WeightSpec = weightTemplate is { IsEnabled: true } w ? w : Options.WeightSpec,
        ActivationSpec = activationTemplate ?? Options.ActivationSpec,
    };

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate) =>
        Merged(weightTemplate, activationTemplate).FindProblems().Select(p => $"bit-width search: {p}").ToList();

    /// <inheritdoc />
    public ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? weightTemplate, QuantSpec? activationTemplate) =>
        new SearchSpacePolicy(layers, Merged(weightTemplate, activationTemplate));

    /// <inheritdoc />
    public PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var options = Merged(context.WeightTemplate, context.ActivationTemplate);
        var fisher = (context.Calibrator as FisherCalibrator)?.Fisher;
        var sensitivity = options.Axis == SearchAxis.ActivationBits
            ? LayerSensitivity.FromActivationError(context.Layers, options, Trajectories, fisher)
            : LayerSensitivity.FromLayers(context.Layers, options, context.Reports, fisher);
        var result = new BitWidthSearch(context.Layers, Trajectories, options, sensitivity, context.Logger, HeldOut).Run(progress, cancellationToken);
        return new PolicySearchOutcome(result.Best.Policy, result);
    }
}

/// <summary>Reads AdaTSQ's search report back from a quantization result.</summary>
public static class BitWidthSearchResultExtensions
{
    extension(QuantizationResult result)
    {
        /// <summary>The bit-width search's frontier and best policy, when the run searched bit-widths (<c>SearchBitWidths</c>); else null.</summary>
        public BitWidthSearchResult? Search => result.SearchOutcome?.Report as BitWidthSearchResult;
    }
}
