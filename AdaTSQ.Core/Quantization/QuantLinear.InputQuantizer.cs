// QuantLinear (partial): a custom fake quantizer of the input (IActivationQuantizer) that replaces the uniform quantization
// of QuantLinear.ActivationRanges.cs for calls whose activation spec is enabled (TQ-DiT's multi-region quantizer after GELU).
using AdaTSQ.Abstractions;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private IActivationQuantizer? _inputQuantizer;

    /// <summary>The custom input quantizer set with <see cref="SetInputQuantizer"/>, or null (the spec's uniform quantization).</summary>
    public IActivationQuantizer? InputQuantizer => _inputQuantizer;

    /// <summary>
    /// Sets (or with null removes) a custom fake quantizer of this layer's input: every call whose activation spec is enabled
    /// quantizes its (shifted, smoothed, rotated) input with <paramref name="quantizer"/> instead of the spec's uniform grid
    /// and range (<see cref="QuantizeInput"/>); calls with unquantized inputs are unchanged. The layer keeps a reference and
    /// does not dispose it; unwrapping the layer (<see cref="ModelSurgery.Restore"/>) drops it. Calls that use it do not run
    /// on the integer kernels (<see cref="IntegerLinearKernel.WhyNotSupported(QuantLinear, LayerQuantConfig)"/>).
    /// </summary>
    public void SetInputQuantizer(IActivationQuantizer? quantizer) => _inputQuantizer = quantizer;
}
