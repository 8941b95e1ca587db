using AdaTSQ.Abstractions;
using AdaTSQ.Methods.D2Quant;
using static TorchSharp.torch;

namespace AdaTSQ.Pipeline;

/// <summary>D²Quant's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class D2QuantBuilderExtensions
{
    /// <summary>
    /// D²Quant (arXiv 2602.02546), weight-only: the dual-scale quantizer (<see cref="DualScaleTransform"/>) on the layers of
    /// <see cref="D2QuantOptions.DsqLayers"/> (default the MLP's fc2; the other layers get the plan's quantizer, RTN unless
    /// another is set), then, after every layer is quantized, the deviation-aware correction
    /// (<see cref="DeviationAwareCorrection"/>, a post-quantization step) into each block's adaLN shift_mlp bias, measured on
    /// <paramref name="calibration"/>. Give the weights with <c>Weights(...)</c> and no activations; <c>Build()</c> refuses
    /// quantized activations. It cannot be combined with another transform that sets input smoothing. <c>Restore()</c> on
    /// the result puts the modulation biases back; <see cref="QuantizationResult.PostQuantizationReports"/> holds DAC's
    /// report. Chainable.
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="options">Options (default: 15 DSQ rounds on fc2, sequential DAC).</param>
    /// <param name="model">The model (the builder's; needed when DAC is on).</param>
    /// <param name="calibration">The data DAC measures the deviation on (needed when DAC is on; the builder's own
    /// calibration data, if any, are not used by D²Quant, which needs no statistics).</param>
    /// <returns>The builder.</returns>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder UseD2Quant(this QuantizationBuilder builder, D2QuantOptions? options = null, nn.Module? model = null,
        ICalibrationSource? calibration = null) =>
        UseD2Quant(builder, out _, options, model, calibration);

    /// <summary>
    /// <see cref="UseD2Quant(QuantizationBuilder, D2QuantOptions?, nn.Module?, ICalibrationSource?)"/>, also giving the two
    /// steps (to read their reports after the run; dispose <paramref name="steps"/>' correction after <c>Restore()</c> or
    /// when the model is dropped).
    /// </summary>
    /// <param name="builder">The builder.</param>
    /// <param name="steps">The DSQ and DAC steps added to the builder.</param>
    /// <param name="options">Options (default: 15 DSQ rounds on fc2, sequential DAC).</param>
    /// <param name="model">The model (needed when DAC is on).</param>
    /// <param name="calibration">The data DAC measures the deviation on (needed when DAC is on).</param>
    /// <returns>The builder.</returns>
    /// <exception cref="QuantizationConfigurationException">The options are invalid (every problem listed).</exception>
    public static QuantizationBuilder UseD2Quant(this QuantizationBuilder builder, out D2QuantSteps steps, D2QuantOptions? options = null,
        nn.Module? model = null, ICalibrationSource? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var o = options ?? new D2QuantOptions();
        var problems = o.FindProblems();
        if (problems.Count > 0) throw new QuantizationConfigurationException(problems);
        var dsq = new DualScaleTransform(o);
        var dac = new DeviationAwareCorrection(o, model, calibration);
        steps = new D2QuantSteps(dsq, dac);
        return builder.AddLayerTransform(dsq).AddPostQuantizationStep(dac);
    }
}

/// <summary>The two steps <c>UseD2Quant</c> adds: DSQ (a layer transform) and DAC (the post-quantization step).</summary>
/// <param name="Dsq">The dual-scale quantizer step; its <see cref="DualScaleTransform.Reports"/> list the fitted layers.</param>
/// <param name="Dac">The deviation-aware correction; its <see cref="DeviationAwareCorrection.Reports"/> list the corrected blocks.</param>
public sealed record D2QuantSteps(DualScaleTransform Dsq, DeviationAwareCorrection Dac);
