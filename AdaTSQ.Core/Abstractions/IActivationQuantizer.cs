using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// A fake quantizer (quantize, then dequantize) of a <see cref="QuantLinear"/>'s input that takes the place of the layer's
/// own uniform quantization (<see cref="QuantLinear.QuantizeInput"/> with the spec's dynamic or calibrated static range),
/// set with <see cref="QuantLinear.SetInputQuantizer"/>. A method uses it for a grid the <see cref="QuantSpec"/> cannot
/// describe, e.g. TQ-DiT's multi-region quantizer after GELU (a fixed step for negative inputs, a searched one for positive).
/// </summary>
/// <remarks>
/// <para>The layer's config still decides whether a call quantizes its input: the quantizer is asked only for calls whose
/// activation spec is enabled, and gets that spec. It sees the input as the layer would quantize it (after an input shift,
/// smoothing or rotation, when the layer has them).</para>
/// <para>It runs on the input's device and dtype (hold no tensors, or handle the input's device). The integer kernels do
/// not run it: a layer with one always falls back to fake quantization (<see cref="IntegerLinearKernel.WhyNotSupported(QuantLinear, LayerQuantConfig)"/>).</para>
/// </remarks>
public interface IActivationQuantizer
{
    /// <summary>A short description for logs and errors (e.g. <c>TQ-DiT MRQ post-GELU, 4 bits</c>).</summary>
    string Description { get; }

    /// <summary>
    /// The fake-quantized <paramref name="input"/>: a new tensor with its shape, dtype and device. Called with an enabled
    /// <paramref name="spec"/> (the call's activation spec) and the call's sampling step (null: outside any step).
    /// </summary>
    /// <exception cref="LayerQuantizationException">The quantizer cannot run <paramref name="spec"/> (e.g. it was fitted at other bits).</exception>
    Tensor QuantizeDequantize(Tensor input, QuantSpec spec, TimestepInfo? step);
}
