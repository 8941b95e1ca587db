using static TorchSharp.torch;

namespace AdaTSQ.Abstractions;

/// <summary>
/// An orthogonal transform <c>R</c> <c>[K, K]</c> of a layer's input channels, applied as <c>t ↦ t·Rᵀ</c> on the
/// last dimension. Because <c>R</c> is orthogonal, <c>(x·Rᵀ)·(W·Rᵀ)ᵀ = x·Wᵀ</c>: a layer may quantize the rotated
/// input against the rotated weight without changing its float output (QuaRot, Ashkboos et al., 2024,
/// arXiv 2404.00456, rotates with Hadamard matrices to spread activation outliers over all channels).
/// A <see cref="Quantization.QuantLinear"/> holds one through <see cref="Quantization.QuantLinear.SetInputRotation"/>;
/// <see cref="Calibration.LayerStatistics.Rotated"/> derives the statistics of rotated inputs from it.
/// Owns its tensors.
/// </summary>
public interface IInputRotation : IDisposable
{
    /// <summary>K: the number of channels rotated (the layer's input features).</summary>
    long Size { get; }

    /// <summary>A short description for logs and errors (e.g. <c>Hadamard 12⊗16, random signs (seed 0)</c>).</summary>
    string Description { get; }

    /// <summary><c>t·Rᵀ</c> over the last dimension of <paramref name="t"/> (<c>[..., K]</c>): a new tensor with <paramref name="t"/>'s dtype and device.</summary>
    Tensor Rotate(Tensor t);

    /// <summary>A copy of this rotation whose tensors live on <paramref name="device"/> (the caller owns both).</summary>
    IInputRotation To(Device device);

    /// <summary>
    /// This rotation in the form the native integer kernels run in their prologue (float32 CPU tensors, owned by the
    /// caller: dispose them with a dispose scope), or null when they cannot run it (the default: the rotation then runs
    /// in TorchSharp before the integer call).
    /// </summary>
    AdaTSQ.Kernels.FusedRotation? ToFusedRotation() => null;
}
