using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.ViDiTQ;

namespace AdaTSQ.Pipeline;

/// <summary>ViDiT-Q's steps of the builder (declared in the builder's namespace so that they show up beside it).</summary>
public static class ViDiTQBuilderExtensions
{
    /// <summary>
    /// ViDiT-Q (Zhao et al., ICLR 2025, arXiv 2406.02540): static–dynamic channel balancing
    /// (<see cref="ChannelBalancingTransform"/>: SmoothQuant-style factors per group of sampling steps, each group with its
    /// own quantized weights, then a Hadamard rotation) on every layer whose activations are quantized; combine with
    /// dynamic per-token activations, ViDiT-Q's (<c>Activations(bits)</c>, the builder's default). With
    /// <see cref="ViDiTQOptions.MixedPrecision"/> set, also its metric-decoupled mixed precision
    /// (<see cref="MetricDecoupledMixedPrecision"/>), which needs <paramref name="trajectories"/> to measure sensitivities on.
    /// Needs calibration data. Do not combine with <c>SmoothActivations</c>, <c>RotateInputs</c> or <c>UseSvdQuant</c>.
    /// Calling it again replaces the options. Chainable.
    /// </summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid, or mixed precision lacks trajectories.</exception>
    public static QuantizationBuilder UseViDiTQ(this QuantizationBuilder builder, ViDiTQOptions? options = null, SearchTrajectories? trajectories = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        options ??= new ViDiTQOptions();
        builder.AddLayerTransform(new ChannelBalancingTransform(options));
        if (options.MixedPrecision is { } mp)
        {
            if (trajectories is null)
                throw new QuantizationConfigurationException(["ViDiT-Q mixed precision measures sensitivities by sampling: pass SearchTrajectories to UseViDiTQ."]);
            builder.SearchPolicy(new MetricDecoupledMixedPrecision(trajectories, mp));
        }
        return builder;
    }
}
