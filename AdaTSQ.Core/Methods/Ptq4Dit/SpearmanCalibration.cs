using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Ptq4Dit;

/// <summary>
/// The result of <see cref="SpearmanCalibration.Calibrate"/>: the calibrated activation salience <c>s^ρ(X)</c> <c>[in]</c>
/// (float64, owned: dispose it) and, per calibration step, Spearman's ρ_t and the weight η_t.
/// </summary>
/// <param name="Salience">s^ρ(X_j) = Σ_t η_t · s(X_j^(t)), float64 <c>[in]</c>.</param>
/// <param name="Rho">ρ_t per step, in the order of the rows given.</param>
/// <param name="Eta">η_t per step (they sum to 1).</param>
public sealed record CalibratedSalience(Tensor Salience, IReadOnlyList<double> Rho, IReadOnlyList<double> Eta) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Salience.Dispose();
}

/// <summary>
/// PTQ4DiT's Spearman's ρ-guided Salience Calibration (SSC). The activation salience changes over the denoising steps, and
/// CSB helps most at the steps where activation and weight saliences are complementary — where their rank correlation is
/// low. So the salience used for the balancing matrix is a mixture over the calibration steps,
/// <c>s^ρ(X_j) = Σ_t η_t · s(X_j^(t))</c>, with <c>η_t = exp(−ρ_t) / Σ_τ exp(−ρ_τ)</c> (a softmax of −ρ) and
/// <c>ρ_t = ρ(s(X^(t)), s(W))</c> Spearman's rank correlation over the input channels.
/// </summary>
public static class SpearmanCalibration
{
    /// <summary>
    /// Spearman's ρ between each row of <paramref name="a"/> <c>[rows, n]</c> (or a vector <c>[n]</c>) and the vector
    /// <paramref name="b"/> <c>[n]</c>: the Pearson correlation of their ranks, ties given their average rank (as
    /// <c>scipy.stats.spearmanr</c>, which the reference code calls). A constant row or a constant <paramref name="b"/> has no
    /// rank correlation; it is given ρ = 0 here (scipy returns NaN).
    /// </summary>
    /// <exception cref="ArgumentException">The lengths differ, or there are fewer than two channels.</exception>
    public static double[] Rho(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var rows = a.Dimensions == 1 ? a.unsqueeze(0) : a;
        if (rows.Dimensions != 2 || b.Dimensions != 1 || rows.shape[1] != b.shape[0])
            throw new ArgumentException($"Spearman's ρ needs rows [rows, n] and a vector [n]; got [{string.Join(", ", a.shape)}] and [{string.Join(", ", b.shape)}].", nameof(b));
        if (b.shape[0] < 2) throw new ArgumentException($"Spearman's ρ needs at least two channels, got {b.shape[0]}.", nameof(b));
        var ra = Ranks(rows.to(ScalarType.Float64));
        var rb = Ranks(b.to(ScalarType.Float64, rows.device).unsqueeze(0));
        ra = ra - ra.mean([1], keepdim: true);
        rb = rb - rb.mean([1], keepdim: true);
        var cov = (ra * rb).sum([1]);
        var norm = (ra.square().sum([1]) * rb.square().sum([1])).sqrt();
        var rho = torch.where(norm > 0, cov / norm.clamp_min(double.Epsilon), torch.zeros_like(cov));
        return rho.cpu().data<double>().ToArray();
    }

    /// <summary>η_t = exp(−ρ_t) / Σ_τ exp(−ρ_τ): the steps whose saliences are least alike (lowest ρ) weigh most.</summary>
    /// <exception cref="ArgumentException">No ρ, or one is not a number.</exception>
    public static double[] StepWeights(IReadOnlyList<double> rho)
    {
        ArgumentNullException.ThrowIfNull(rho);
        if (rho.Count == 0) throw new ArgumentException("no step to weight: ρ is empty.", nameof(rho));
        if (rho.Any(r => !double.IsFinite(r))) throw new ArgumentException($"ρ must be finite, got [{string.Join(", ", rho)}].", nameof(rho));
        double max = rho.Max(r => -r);
        var e = rho.Select(r => Math.Exp(-r - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }

    /// <summary>
    /// SSC for one layer: from the per-step activation saliences <paramref name="stepSalience"/> <c>[steps, in]</c> (row t =
    /// max |X_j| over step t's calibration inputs) and the weight salience <paramref name="weightSalience"/> <c>[in]</c>, the
    /// calibrated salience <c>Σ_t η_t s(X^(t))</c> with its ρ_t and η_t.
    /// </summary>
    public static CalibratedSalience Calibrate(Tensor stepSalience, Tensor weightSalience)
    {
        ArgumentNullException.ThrowIfNull(stepSalience);
        if (stepSalience.Dimensions != 2 || stepSalience.shape[0] == 0)
            throw new ArgumentException($"step saliences have shape [{string.Join(", ", stepSalience.shape)}], expected [steps ≥ 1, in].", nameof(stepSalience));
        var rho = Rho(stepSalience, weightSalience);
        var eta = StepWeights(rho);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var x = stepSalience.to(ScalarType.Float64);
        var weights = torch.tensor(eta, dtype: ScalarType.Float64, device: x.device);
        var salience = (x * weights.unsqueeze(1)).sum([0]).MoveToOuterDisposeScope();
        return new CalibratedSalience(salience, rho, eta);
    }

    // Ranks 1..n along dim 1, ties getting the average of the ranks they span: (#{< v} + #{≤ v} + 1) / 2.
    private static Tensor Ranks(Tensor rows)
    {
        var sorted = rows.sort(1).Values.contiguous();
        var values = rows.contiguous();
        var below = torch.searchsorted(sorted, values, right: false).to(ScalarType.Float64);
        var upTo = torch.searchsorted(sorted, values, right: true).to(ScalarType.Float64);
        return (below + upTo + 1) * 0.5;
    }
}
