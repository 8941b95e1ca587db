using AdaTSQ.Methods.Htg;

namespace AdaTSQ.Pipeline;

/// <summary>HTG's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class HtgBuilderExtensions
{
    /// <summary>
    /// HTG (Ding et al., arXiv 2503.06930): a per-channel input shift per hierarchical timestep group and a per-channel
    /// scale on every layer with quantized activations (<see cref="HtgTransform"/>). Weights go through the plan's
    /// quantizer (RTN, or GPTQ with <c>UseHessianOptimization</c>). Needs calibration data over sampling trajectories (the
    /// per-step channel extremes). Do not combine with <c>SmoothActivations</c>, <c>UseViDiTQ</c> or <c>UseSvdQuant</c>
    /// (each sets the smoothing factors) unless <see cref="HtgOptions.Scale"/> is false. Calling it again replaces the
    /// options. Chainable.
    /// </summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid.</exception>
    public static QuantizationBuilder UseHtg(this QuantizationBuilder builder, HtgOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddLayerTransform(new HtgTransform(options));
    }
}
