using AdaTSQ.Methods.SmoothQuant;

namespace AdaTSQ.Pipeline;

/// <summary>SmoothQuant's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class SmoothQuantBuilderExtensions
{
    /// <summary>
    /// SmoothQuant with migration strength <paramref name="alpha"/> (see <see cref="SmoothQuantTransform"/>): before
    /// quantization each layer's inputs are divided per channel by <c>s_j = max|X_j|^α / max|W_j|^(1−α)</c> and its
    /// weight columns multiplied by them. Needs calibration data and quantized activations. Calling it again
    /// replaces α. Chainable.
    /// </summary>
    public static QuantizationBuilder SmoothActivations(this QuantizationBuilder builder, double alpha = 0.5)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddLayerTransform(new SmoothQuantTransform(alpha));
    }
}
