using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// A linear layer that a quantization run works on, as calibrators and observers see it: its name,
/// its shape, its float weight, and a slot for the observer that watches its inputs. The library's
/// implementation is <c>AdaTSQ.Quantization.QuantLinear</c>; calibrators, Fisher estimators and
/// calibration sources depend on this interface only, so they never need the concrete module.
/// </summary>
public interface IQuantizableLayer
{
    /// <summary>The dotted name of the layer in its model (e.g. <c>blocks.3.attn.qkv</c>).</summary>
    string LayerName { get; }

    /// <summary>Input features (K).</summary>
    long InFeatures { get; }

    /// <summary>Output features (N).</summary>
    long OutFeatures { get; }

    /// <summary>The float weight <c>[out, in]</c> (a parameter: autograd can differentiate through it).</summary>
    Tensor Weight { get; }

    /// <summary>
    /// Whether the layer computes with anything other than its float weight and inputs (a quantized config
    /// or a policy is set). Estimates that must be made on the full-precision model check this.
    /// </summary>
    bool IsQuantized { get; }

    /// <summary>Sees every input of the layer while set (null = none). One observer at a time.</summary>
    ILayerInputObserver? Observer { get; set; }
}
