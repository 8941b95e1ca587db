// QuantLinear (partial): SmoothQuant input smoothing: the factors s, their reciprocal applied to
// the input of quantized calls, and the smoothed weight W · diag(s) (minus the low-rank branch of
// QuantLinear.LowRank.cs, when set) the versions are quantized from. The module and its forward are in
// QuantLinear.cs.
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
    /// the versions must be quantized from the smoothed weight (see <see cref="SmoothedWeight"/>).
    /// </summary>
    public void SetInputSmoothing(Tensor? factors)
    {
        if (_versions.Count > 0)
            throw new LayerQuantizationException(LayerName, "smoothing factors must be set before any weight version is quantized (the versions are made from the smoothed weight).");
        if (_lowRank is not null)
            throw new LayerQuantizationException(LayerName, "smoothing factors cannot change under a low-rank branch (it was made in the smoothed input space): remove the branch first.");
        if (factors is not null)
        {
            if (factors.Dimensions != 1 || factors.shape[0] != InFeatures)
                throw new LayerQuantizationException(LayerName, $"smoothing factors have shape [{string.Join(", ", factors.shape)}], expected [{InFeatures}].");
            using var check = torch.NewDisposeScope();
            if (!(factors.isfinite().all().item<bool>() && (factors > 0).all().item<bool>()))
                throw new LayerQuantizationException(LayerName, "smoothing factors must be finite and positive.");
        }
        DisposeSmoothing();
        if (factors is null) return;
        using var noGrad = torch.no_grad();
        _smoothing = factors.to(weight.dtype, weight.device, copy: true).DetachFromDisposeScope();
        _inverseSmoothing = _smoothing.reciprocal().DetachFromDisposeScope();
    }

    /// <summary>
    /// The weight the quantized versions stand for (a new tensor, detached): <c>W · diag(s) − L1 · L2</c>, i.e. the
    /// smoothed weight (<c>W</c> without smoothing) minus the low-rank branch when one is set (SVDQuant's residual R;
    /// see <see cref="LowRank"/>). Quantizers quantize it and reports measure the versions' error against it.
    /// </summary>
    public Tensor SmoothedWeight()
    {
        using var noGrad = torch.no_grad();
        var w = _smoothing is null ? weight.detach().clone() : weight.detach() * _smoothing.unsqueeze(0);
        if (_lowRank is null) return w;
        using (w)
        using (var product = _lowRank.Product()) return w - product;
    }

    // The float weight a call with quantized activations but full-precision weights multiplies with: the parameter
    // itself when nothing transforms it, else SmoothedWeight() made once and cached.
    private Tensor FloatWeightForQuantizedInput()
    {
        if (_smoothing is null && _lowRank is null) return weight;
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
