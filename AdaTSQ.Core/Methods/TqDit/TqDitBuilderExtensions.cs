using AdaTSQ.Methods.TqDit;

namespace AdaTSQ.Pipeline;

/// <summary>TQ-DiT's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class TqDitBuilderExtensions
{
    /// <summary>
    /// TQ-DiT (Hwang et al., arXiv 2502.04056; see <see cref="TqDitSearch"/>): weights per tensor (a fused qkv per part) and
    /// static per-tensor activations, each step searched on the grid <c>(α + i(β−α)/n)·Δ0</c> by the gradient-weighted output
    /// error, in alternating weight/activation rounds, with one activation step per uniform timestep group (TGQ). Use with
    /// <c>Weights(bits)</c> and <c>Activations(bits, dynamic: false)</c> (or no activation quantization). Sets the quantizer
    /// (<see cref="TqDitQuantizer"/>), the calibration data (<paramref name="calls"/>, recorded on the full-precision model with
    /// <see cref="TqDitCalibrationCalls.ForDiT"/>; the caller disposes them after the run) and the policy search. With
    /// <see cref="TqDitOptions.PostGeluMultiRegion"/>, fc2's input uses MRQ after GELU. Not implemented: the attention matmuls
    /// (see <see cref="TqDitOptions"/>). Chainable.
    /// </summary>
    public static QuantizationBuilder UseTqDit(this QuantizationBuilder builder, TqDitCalibrationCalls calls, TqDitOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(calls);
        var search = new TqDitSearch(options ?? new TqDitOptions(), calls);
        return builder.Quantizer(new TqDitQuantizer()).CalibrationData(calls).SearchPolicy(search);
    }
}
