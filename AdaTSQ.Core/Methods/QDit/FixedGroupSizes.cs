using AdaTSQ.Abstractions;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Methods.QDit;

/// <summary>
/// Applies a Q-DiT group-size assignment found earlier (<see cref="GroupSizeAssignment.Load"/>) without searching: each
/// named layer is quantized only at its own group size, with the builder's Weights(...)/Activations(...) as templates.
/// Plugged in as a policy search so that it composes with the templates; made by <c>UseQDit(assignment)</c>.
/// </summary>
public sealed class FixedGroupSizes : IPolicySearch
{
    /// <summary>Creates the step.</summary>
    public FixedGroupSizes(GroupSizeAssignment assignment, QDitOptions options)
    {
        Assignment = assignment ?? throw new ArgumentNullException(nameof(assignment));
        Options = options ?? throw new ArgumentNullException(nameof(options));
    }

    /// <summary>The assignment applied.</summary>
    public GroupSizeAssignment Assignment { get; }

    /// <summary>The options (only <see cref="QDitOptions.ActivationGroupsFollowWeights"/> and the quantizer matter here).</summary>
    public QDitOptions Options { get; }

    /// <inheritdoc />
    public string Name => "Q-DiT fixed group sizes, UseQDit(assignment)";

    /// <inheritdoc />
    public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var p = new List<string>();
        if (weightTemplate is not { IsEnabled: true }) p.Add("Q-DiT allocates weight group sizes: call Weights(bits).");
        if (activationTemplate is { IsEnabled: true, Dynamic: false })
            p.Add($"Q-DiT quantizes activations dynamically, but the activation template is static ({activationTemplate}): use Activations(bits).");
        return p;
    }

    /// <inheritdoc />
    /// <exception cref="QuantizationConfigurationException">A selected layer has no group size in the assignment.</exception>
    public ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? weightTemplate, QuantSpec? activationTemplate)
    {
        var missing = layers.Where(l => !Assignment.GroupSizes.ContainsKey(l)).ToList();
        if (missing.Count > 0)
            throw new QuantizationConfigurationException([$"the Q-DiT assignment has no group size for {missing.Count} selected layer(s): {string.Join(", ", missing.Take(12))}{(missing.Count > 12 ? ", …" : "")}; select only its layers or search again."]);
        return Assignment.ToPolicy(weightTemplate!, activationTemplate ?? QuantSpec.FullPrecision, Options);
    }

    /// <inheritdoc />
    public PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new PolicySearchOutcome(Assignment.ToPolicy(context.WeightTemplate!, context.ActivationTemplate ?? QuantSpec.FullPrecision, Options), Assignment);
    }
}
