using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// Sees the input of a quantizable layer (<see cref="IQuantizableLayer"/>) on every call while it is attached (calibrators use
/// it to collect statistics). Called inside the layer's forward, so it works whether the parent calls
/// <c>forward</c> or <c>call</c> (TorchSharp's hooks fire only through <c>call</c>).
/// </summary>
public interface ILayerInputObserver
{
    /// <summary>
    /// Observes <paramref name="input"/> (<c>[..., in]</c>, before activation quantization) of
    /// <paramref name="layer"/> at <paramref name="step"/>. Must not modify or dispose the input.
    /// </summary>
    void Observe(IQuantizableLayer layer, Tensor input, TimestepInfo? step);
}
