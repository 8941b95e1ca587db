using AdaTSQ.Calibration;
using AdaTSQ.Methods.Ptq4Dit;

namespace AdaTSQ.Pipeline;

/// <summary>PTQ4DiT's step of the builder (declared in the builder's namespace so that it shows up beside it).</summary>
public static class Ptq4DitBuilderExtensions
{
    /// <summary>
    /// PTQ4DiT (Wu et al., NeurIPS 2024, arXiv 2405.16005; see <see cref="Ptq4DitBalancing"/>): before the capture, the
    /// per-step input saliences of the full-precision model give each balanced layer (qkv, proj, fc1 by default) its
    /// Spearman-calibrated balancing factors, which are folded offline into the model (adaLN modulation, value rows); then
    /// the run captures, quantizes (RTN, or GPTQ with <c>UseHessianOptimization</c>) and searches as usual, on the
    /// re-parameterized model. Sets the calibrator (a <see cref="UniformCalibrator"/> underneath; a later
    /// <c>Calibrator(...)</c> or <c>UseFisherCalibration</c> replaces it, and the run then fails before quantizing) and
    /// cannot use <c>CacheCalibration</c>. Needs calibration data. <c>Restore()</c> of the result (and a failed run) undoes the
    /// fold, so the restored model computes exactly what it did before; <paramref name="balancing"/> keeps its reports and
    /// can be disposed afterwards. Chainable.
    /// </summary>
    public static QuantizationBuilder UsePtq4Dit(this QuantizationBuilder builder, Ptq4DitBalancing balancing)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(balancing);
        builder.Calibrator(logger => new Ptq4DitCalibrator(new UniformCalibrator(logger), balancing, logger));
        return builder.AddLayerTransform(new Ptq4DitTransform(balancing));
    }
}
