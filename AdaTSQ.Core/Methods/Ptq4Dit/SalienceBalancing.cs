using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// PTQ4DiT's Channel-wise Salience Balancing (CSB). For a linear <c>Y = X·Wᵀ</c> with weight <c>[out, in]</c>, the salience of
/// input channel <c>j</c> is <c>s(X_j) = max|X_j|</c> on the activation side and <c>s(W_j) = max_i |W_ij|</c> on the weight side.
/// The diagonal balancing matrix <c>B = diag(b)</c>, <c>b_j = √(s(X_j) / s(W_j))</c>, gives <c>X' = X·B⁻¹</c> and
/// <c>W' = W·B</c> (weight columns scaled), so <c>X'·W'ᵀ = X·Wᵀ</c> and both saliences become the same,
/// <c>s(X'_j) = s(W'_j) = √(s(X_j)·s(W_j))</c>: an extreme channel on one side is shared with the other, which is mild there
/// (the paper's complementarity observation). This is SmoothQuant's factor at migration strength ½.
/// </summary>
public static class SalienceBalancing
{
    /// <summary><c>s(W_j) = max_i |W_ij|</c> for a weight <c>[out, in]</c>: a new float64 tensor <c>[in]</c>.</summary>
    /// <exception cref="ArgumentException">The weight is not two-dimensional.</exception>
    public static Tensor WeightSalience(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Dimensions != 2)
            throw new ArgumentException($"weight has shape [{string.Join(", ", weight.shape)}], expected [out, in].", nameof(weight));
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        return weight.detach().abs().amax([0]).to(ScalarType.Float64).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The balancing factors <c>b_j = √(max(s(X_j), floor) / max(s(W_j), floor))</c>: a new float32 tensor <c>[in]</c> on the
    /// device of <paramref name="activationSalience"/>, finite and positive.
    /// </summary>
    /// <param name="activationSalience">s(X) <c>[in]</c> (for SSC, the calibrated salience <see cref="SpearmanCalibration.Calibrate"/> gives).</param>
    /// <param name="weightSalience">s(W) <c>[in]</c>, see <see cref="WeightSalience"/>.</param>
    /// <param name="floor">Smallest salience used (see <see cref="Ptq4DitOptions.SalienceFloor"/>).</param>
    /// <exception cref="ArgumentException">The saliences differ in shape, are not vectors, contain NaN or ±Inf, or the floor is not positive.</exception>
    public static Tensor Factors(Tensor activationSalience, Tensor weightSalience, double floor = 1e-5)
    {
        ArgumentNullException.ThrowIfNull(activationSalience);
        ArgumentNullException.ThrowIfNull(weightSalience);
        if (activationSalience.Dimensions != 1 || !activationSalience.shape.SequenceEqual(weightSalience.shape))
            throw new ArgumentException($"activation salience [{string.Join(", ", activationSalience.shape)}] and weight salience [{string.Join(", ", weightSalience.shape)}] must be vectors of one length.", nameof(weightSalience));
        if (!(floor > 0) || double.IsInfinity(floor)) throw new ArgumentException($"salience floor {floor} must be a finite positive number.", nameof(floor));
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var x = activationSalience.to(ScalarType.Float64);
        var w = weightSalience.to(ScalarType.Float64, x.device);
        if (!x.isfinite().all().item<bool>() || !w.isfinite().all().item<bool>())
            throw new ArgumentException("saliences must be finite (NaN or ±Inf found).", nameof(activationSalience));
        return (x.clamp_min(floor) / w.clamp_min(floor)).sqrt().to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
