using AdaTSQ.Methods.QuaRot;

namespace AdaTSQ.Pipeline;

/// <summary>QuaRot's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class QuaRotBuilderExtensions
{
    /// <summary>
    /// QuaRot's Hadamard rotation of layer inputs (see <see cref="QuaRotTransform"/>; Ashkboos et al., 2024,
    /// arXiv 2404.00456): before quantization each selected layer — by default every layer whose activations are
    /// quantized — gets an orthonormal randomized Hadamard rotation R of its inputs and its weight becomes W·Rᵀ,
    /// so that activation outliers are spread over all channels. Needs no calibration data; with GPTQ
    /// (<c>UseHessianOptimization</c>) the rotated weight is solved against the rotated Hessian. With SmoothQuant,
    /// call <c>SmoothActivations</c> first (smoothing, then rotation). Calling it again replaces the options. Chainable.
    /// </summary>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder RotateInputs(this QuantizationBuilder builder, QuaRotOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddLayerTransform(new QuaRotTransform(options));
    }
}
