using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.QDit;
using static TorchSharp.torch;

namespace AdaTSQ.Pipeline;

/// <summary>Q-DiT's steps of the builder (declared in the builder's namespace so that they show up beside it).</summary>
public static class QDitBuilderExtensions
{
    /// <summary>
    /// Q-DiT (Chen et al., CVPR 2025, arXiv 2406.17343): every selected layer is quantized once per candidate group size
    /// that divides its input dimension — by GPTQ unless <see cref="QDitOptions.Gptq"/> is null — and an evolutionary
    /// search (<see cref="QDitGroupSearch"/>) picks one group size per layer, no costlier than the uniform reference
    /// group, by the final-sample error of <paramref name="trajectories"/> against full precision. Activations are
    /// quantized dynamically per token (× the layer's group, with <see cref="QDitOptions.ActivationGroupsFollowWeights"/>).
    /// Weights(bits[, groupSize])/Activations(bits) are the templates (bits, symmetry, clipping; a per-group weight template
    /// sets the reference group). The result's policy is static per layer, its <c>QDit</c> the <see cref="QDitSearchResult"/>.
    /// Needs calibration data when GPTQ is used. Chainable.
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="model">The model given to ForModel (the layers' input dimensions decide which group sizes fit).</param>
    /// <param name="trajectories">What candidates are scored on, e.g. <see cref="SearchTrajectories.ForDiT"/> with the sampler's step form.</param>
    /// <param name="options">Candidates, constraint, evolution parameters, seed (default <see cref="QDitOptions"/>).</param>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder UseQDit(this QuantizationBuilder builder, nn.Module model, SearchTrajectories trajectories, QDitOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trajectories);
        var o = options ?? new QDitOptions();
        var problems = o.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        if (o.Gptq is { } gptq) builder.UseHessianOptimization(gptq);
        return builder.SearchPolicy(new QDitGroupSearch(model, trajectories, o));
    }

    /// <summary>
    /// Q-DiT with a group-size assignment found before (<see cref="GroupSizeAssignment.Load"/>, or a result's
    /// <c>QDit.Assignment</c>): no search; each layer is quantized at its assigned group size only (by GPTQ unless
    /// <see cref="QDitOptions.Gptq"/> is null). Chainable.
    /// </summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder UseQDit(this QuantizationBuilder builder, GroupSizeAssignment assignment, QDitOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(assignment);
        var o = options ?? new QDitOptions();
        var problems = o.Gptq?.FindProblems() ?? [];
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        if (o.Gptq is { } gptq) builder.UseHessianOptimization(gptq);
        return builder.SearchPolicy(new FixedGroupSizes(assignment, o));
    }
}

/// <summary>Reads Q-DiT's search report back from a quantization result.</summary>
public static class QDitSearchResultExtensions
{
    extension(QuantizationResult result)
    {
        /// <summary>Q-DiT's chosen assignment and search numbers, when the run searched group sizes (<c>UseQDit</c> with trajectories); else null.</summary>
        public QDitSearchResult? QDit => result.SearchOutcome?.Report as QDitSearchResult;
    }
}
