// QuantLinear (partial): SVDQuant's low-rank branch L1·L2, kept in full precision beside the quantized
// weight versions, which then stand for the residual W·diag(s) − L1·L2. The module and its forward are in
// QuantLinear.cs; the smoothing whose input space the branch acts in is in QuantLinear.Smoothing.cs.
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

public sealed partial class QuantLinear
{
    private LowRankBranch? _lowRank;

    /// <summary>
    /// The full-precision low-rank branch (SVDQuant, arXiv 2411.05007), or null. When set, a quantized call computes
    /// <c>Q(x̃) · Q(R)ᵀ + x̃ · L2ᵀ · L1ᵀ + b</c>, where <c>x̃</c> is the input the quantized GEMM sees (today <c>x / s</c>,
    /// or <c>x</c> without smoothing) and the weight versions are quantized from the residual
    /// <c>R = W · diag(s) − L1 · L2</c> (<see cref="SmoothedWeight"/>). Full-precision calls ignore it.
    /// </summary>
    public LowRankBranch? LowRank => _lowRank;

    /// <summary>
    /// Sets the low-rank branch from <paramref name="up"/> <c>L1 [out, r]</c> and <paramref name="down"/> <c>L2 [r, in]</c>
    /// (copied, in the layer's dtype and on its device), or removes it when both are null. Only while no weight version
    /// is held, since the versions must be quantized from the residual. The branch acts in the input space of the
    /// current smoothing: set the smoothing first (<see cref="SetInputSmoothing"/> refuses to change under a branch).
    /// </summary>
    /// <exception cref="LayerQuantizationException">A weight version is held, only one factor is given, or a shape is wrong or a value not finite.</exception>
    public void SetLowRankBranch(Tensor? up, Tensor? down)
    {
        if (_versions.Count > 0)
            throw new LayerQuantizationException(LayerName, "the low-rank branch must be set before any weight version is quantized (the versions are made from the residual W·diag(s) − L1·L2).");
        if ((up is null) != (down is null))
            throw new LayerQuantizationException(LayerName, "the low-rank branch needs both factors L1 [out, r] and L2 [r, in], or neither.");
        if (up is not null && down is not null)
        {
            if (up.Dimensions != 2 || down.Dimensions != 2 || up.shape[0] != OutFeatures || down.shape[1] != InFeatures || up.shape[1] != down.shape[0])
                throw new LayerQuantizationException(LayerName, $"low-rank factors have shapes [{string.Join(", ", up.shape)}] and [{string.Join(", ", down.shape)}], expected [{OutFeatures}, r] and [r, {InFeatures}].");
            using var check = NewDisposeScope();
            if (!(up.isfinite().all().item<bool>() && down.isfinite().all().item<bool>()))
                throw new LayerQuantizationException(LayerName, "low-rank factors must be finite.");
        }
        DisposeLowRank();
        InvalidateSmoothedWeight();
        if (up is not null && down is not null) _lowRank = LowRankBranch.Create(up, down, weight.dtype, weight.device);
    }

    /// <summary>Bytes of the low-rank branch (0 without one).</summary>
    public long LowRankBytes => _lowRank?.Bytes ?? 0;

    // The quantized paths' output plus the branch applied to the same transformed input x̃ (disposes y when it adds).
    private Tensor AddLowRank(Tensor y, Tensor transformedInput)
    {
        if (_lowRank is null) return y;
        using (y)
        using (var branch = _lowRank.Forward(transformedInput)) return y + branch;
    }

    private void DisposeLowRank()
    {
        _lowRank?.Dispose();
        _lowRank = null;
    }
}
