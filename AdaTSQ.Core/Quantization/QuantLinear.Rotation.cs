// QuantLinear (partial): an orthogonal input rotation R (QuaRot's Hadamard rotation): quantized calls
// take (x / s)·Rᵀ and the weight versions are quantized from W·diag(s)·Rᵀ. The module and its forward
// are in QuantLinear.cs; the smoothing s is in QuantLinear.Smoothing.cs.
using AdaTSQ.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private IInputRotation? _rotation;

    /// <summary>
    /// The input rotation <c>R</c> (orthogonal, <c>[in, in]</c>), or null: when set, a quantized call computes
    /// <c>Q((x / s)·Rᵀ) · Q(W·diag(s)·Rᵀ)ᵀ + b</c> (smoothing <c>s</c>, if any, first), which equals
    /// <c>x·Wᵀ + b</c> in exact arithmetic but spreads activation outliers over all channels (QuaRot,
    /// arXiv 2404.00456). Full-precision calls ignore it. The rotation runs on every quantized call: in the
    /// native prologue of the integer kernels when it has a native form (<see cref="IInputRotation.ToFusedRotation"/>;
    /// <c>HadamardRotation</c> has), else in TorchSharp.
    /// </summary>
    public IInputRotation? InputRotation => _rotation;

    /// <summary>
    /// Sets (or with null removes) the input rotation; the layer keeps its own copy on its device. Only while no
    /// weight version is held, since the versions must be quantized from the rotated weight (see
    /// <see cref="SmoothedWeight"/>). Smoothing, if wanted, must be set first.
    /// </summary>
    /// <exception cref="LayerQuantizationException">A weight version exists, or the rotation's size is not <see cref="InFeatures"/>.</exception>
    public void SetInputRotation(IInputRotation? rotation)
    {
        if (_versions.Count > 0 || HasStepVersions)
            throw new LayerQuantizationException(LayerName, "an input rotation must be set before any weight version is quantized (the versions are made from the rotated weight).");
        if (_lowRank is not null)
            throw new LayerQuantizationException(LayerName, "an input rotation cannot be set under a low-rank branch (the branch was made in the unrotated input space): rotate first, or do not combine RotateInputs with UseSvdQuant.");
        if (rotation is not null && rotation.Size != InFeatures)
            throw new LayerQuantizationException(LayerName, $"input rotation '{rotation.Description}' rotates {rotation.Size} channels, expected {InFeatures}.");
        DisposeRotation();
        _rotation = rotation?.To(weight.device);
    }

    // 1 / s of the smoothing at the current step (the integer kernels multiply each row by it), or null.
    internal Tensor? InverseInputSmoothing => ActiveInverseSmoothing;

    // The input a quantized call works on, always a new tensor (an alias when nothing transforms it).
    internal Tensor TransformedInput(Tensor input) => TransformInput(input) ?? input.alias();

    // The input a quantized call works on: x / s (smoothing, the current step group's if any) then ·Rᵀ (rotation);
    // null when neither is set.
    private Tensor? TransformInput(Tensor input)
    {
        var inverseSmoothing = ActiveInverseSmoothing;
        if (inverseSmoothing is null && _rotation is null) return null;
        if (_rotation is null) return input * inverseSmoothing!;
        if (inverseSmoothing is null) return _rotation.Rotate(input);
        using var smoothed = input * inverseSmoothing;
        return _rotation.Rotate(smoothed);
    }

    // W·Rᵀ for a weight [out, in] (disposing it), or the weight itself without rotation.
    private Tensor RotateWeight(Tensor w)
    {
        if (_rotation is null) return w;
        using (w) return _rotation.Rotate(w);
    }

    private void MoveRotation(Device device)
    {
        if (_rotation is null) return;
        var moved = _rotation.To(device);
        DisposeRotation();
        _rotation = moved;
    }

    private void DisposeRotation()
    {
        _rotation?.Dispose();
        _rotation = null;
        _smoothedWeight?.Dispose();
        _smoothedWeight = null;
        InvalidateStepSmoothedWeights();
    }
}
