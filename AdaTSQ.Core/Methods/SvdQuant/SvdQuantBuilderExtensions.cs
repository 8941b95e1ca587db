using AdaTSQ.Methods.SvdQuant;

namespace AdaTSQ.Pipeline;

/// <summary>SVDQuant's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class SvdQuantBuilderExtensions
{
    /// <summary>
    /// SVDQuant (Li et al., ICLR 2025, arXiv 2411.05007; see <see cref="SvdQuantTransform"/>): before quantization each
    /// layer is smoothed with a migration strength α searched per layer, its smoothed weight split into a full-precision
    /// rank-r branch (the top singular triplets) and a residual, and only the residual is quantized — by the plan's
    /// quantizer, so with <c>UseHessianOptimization</c> GPTQ quantizes it on the Hessian of the smoothed inputs. Needs
    /// calibration data. Cannot be combined with <c>SmoothActivations</c> (both set the input smoothing). Calling it
    /// again replaces the options. Chainable.
    /// </summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder UseSvdQuant(this QuantizationBuilder builder, SvdQuantOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var o = options ?? new SvdQuantOptions();
        var problems = o.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        return builder.AddLayerTransform(new SvdQuantTransform(o));
    }
}
