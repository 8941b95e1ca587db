// QuantLinear (partial): SmoothQuant input smoothing: the factors s, their reciprocal applied to
// the input of quantized calls, and the weight the versions are quantized from: W · diag(s), times Rᵀ with an
// input rotation (QuantLinear.Rotation.cs), minus the low-rank branch (QuantLinear.LowRank.cs) when set.
// The module and its forward are in QuantLinear.cs.
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private Tensor? _smoothing;
    private Tensor? _inverseSmoothing;
    private Tensor? _smoothedWeight;

    /// <summary>
    /// SmoothQuant factors <c>s</c> <c>[in]</c>, or null: when set, a quantized call computes
    /// <c>Q(x / s) · Q(W · diag(s))ᵀ</c> (the weight versions are quantized from <c>W · diag(s)</c>), which
    /// equals <c>x Wᵀ</c> in exact arithmetic but moves activation outliers into the weights. Full-precision
    /// calls ignore it.
    /// </summary>
    public Tensor? InputSmoothing => _smoothing;

    /// <summary>
    /// Sets (or with null removes) the SmoothQuant factors. Only while no weight version is held, since
    /// the versions must be quantized from the smoothed weight (see <see cref="SmoothedWeight"/>), and
    /// before any <see cref="InputRotation"/> (smoothing comes first in the call).
    /// </summary>
    public void SetInputSmoothing(Tensor? factors)
    {
        CheckSmoothingCanChange();
        if (factors is not null) CheckSmoothingFactors(factors);
        DisposeSmoothing();
        if (factors is null) return;
        using var noGrad = torch.no_grad();
        _smoothing = factors.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
        _inverseSmoothing = _smoothing.reciprocal().DetachFromDisposeScope();
    }

    // Smoothing (the layer's own or a step group's) may change only before versions, branch and rotation exist.
    private void CheckSmoothingCanChange()
    {
        if (_versions.Count > 0 || HasStepVersions)
            throw new LayerQuantizationException(LayerName, "smoothing factors must be set before any weight version is quantized (the versions are made from the smoothed weight).");
        if (_lowRank is not null)
            throw new LayerQuantizationException(LayerName, "smoothing factors cannot change under a low-rank branch (it was made in the smoothed input space): remove the branch first.");
        if (_rotation is not null)
            throw new LayerQuantizationException(LayerName, "smoothing factors must be set before the input rotation (the call smooths, then rotates): smooth first (SmoothActivations before RotateInputs).");
    }

    private void CheckSmoothingFactors(Tensor factors)
    {
        if (factors.Dimensions != 1 || factors.shape[0] != InFeatures)
            throw new LayerQuantizationException(LayerName, $"smoothing factors have shape [{string.Join(", ", factors.shape)}], expected [{InFeatures}].");
        using var check = torch.NewDisposeScope();
        if (!(factors.isfinite().all().item<bool>() && (factors > 0).all().item<bool>()))
            throw new LayerQuantizationException(LayerName, "smoothing factors must be finite and positive.");
    }

    /// <summary>
    /// The weight the quantized versions stand for, i.e. the one that multiplies the transformed input of a
    /// quantized call (a new tensor, detached): <c>W · diag(s) · Rᵀ − L1 · L2</c> with smoothing <c>s</c>, rotation
    /// <c>R</c> (see <see cref="InputRotation"/>) and a low-rank branch (SVDQuant's residual; see <see cref="LowRank"/>),
    /// each factor dropped when not set. Quantizers quantize it and reports measure the versions' error against it.
    /// </summary>
    public Tensor SmoothedWeight()
    {
        using var noGrad = torch.no_grad();
        var w = RotateWeight(_smoothing is null ? weight.detach().clone() : weight.detach() * _smoothing.unsqueeze(0));
        if (_lowRank is null) return w;
        using (w)
        using (var product = _lowRank.Product()) return w - product;
    }

    // The float weight a call with quantized activations but full-precision weights multiplies with: the parameter
    // itself when nothing transforms it, else SmoothedWeight() made once and cached.
    private Tensor FloatWeightForQuantizedInput()
    {
        if (_smoothing is null && _rotation is null && _lowRank is null) return weight;
        return _smoothedWeight ??= SmoothedWeight().DetachFromDisposeScope();
    }

    private void InvalidateSmoothedWeight()
    {
        _smoothedWeight?.Dispose();
        _smoothedWeight = null;
    }

    private void DisposeSmoothing()
    {
        _smoothing?.Dispose();
        _inverseSmoothing?.Dispose();
        InvalidateSmoothedWeight();
        _smoothing = _inverseSmoothing = null;
    }
}
