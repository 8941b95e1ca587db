using AdaTSQ.Calibration;
using AdaTSQ.Methods.SmoothQuant;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.SvdQuant;

/// <summary>One candidate of <see cref="MigrationStrengthSearch"/>: its α (null = no smoothing, λ = 1) and its proxy error.</summary>
/// <param name="Alpha">Migration strength, or null for λ = 1.</param>
/// <param name="Error">The proxy output error per input row (see <see cref="MigrationStrengthSearch"/>).</param>
public sealed record MigrationStrengthCandidate(double? Alpha, double Error);

/// <summary>The α <see cref="MigrationStrengthSearch.Run"/> chose (null = no smoothing) and every candidate's error, in grid order.</summary>
/// <param name="Alpha">The chosen migration strength, or null for λ = 1.</param>
/// <param name="Candidates">Every candidate tried, in the order tried.</param>
public sealed record MigrationStrengthChoice(double? Alpha, IReadOnlyList<MigrationStrengthCandidate> Candidates);

/// <summary>
/// SVDQuant's per-layer search of the smoothing migration strength α (arXiv 2411.05007 §4; deepcompressor grid-searches
/// it per layer too). For each candidate λ (<see cref="SvdQuantOptions.IncludeUnsmoothed"/>: λ = 1 first, then
/// <c>λ_j = max|X_j|^α / max|W_j|^(1−α)</c> for each α of the grid) it splits <c>W̃ = W·diag(λ)</c> into the rank-r branch
/// L and the residual <c>R = W̃ − L</c>, quantizes R by round-to-nearest, and scores the layer's expected squared output
/// error per input row, computed from the calibration statistics alone (no stored inputs):
/// <code>
/// E(λ) = tr(ΔW · H̃ · ΔWᵀ) + σ²(λ) · ‖Q(R)‖²_F,   ΔW = Q(R) − R,   H̃ = H / (λ λᵀ) / Σα,   σ² = Δ² / 12
/// </code>
/// The first term is the Hessian-weighted weight error on the smoothed inputs' second moment H̃ (the proxy GPTQ
/// minimises); the second is the activation quantization noise through the quantized residual (the branch sees the
/// unquantized x̃), modelled as uniform rounding noise of step Δ = (range of x̃) / (levels − 1), the range taken from the
/// per-channel maxima of x̃ = x/λ — exact for static per-tensor ranges, an upper bound for per-token (or per-group)
/// dynamic ranges. Without the second term the search would ignore the activations, whose outliers smoothing is for.
/// Ties go to the earlier candidate; the search is deterministic (the randomized SVD is seeded).
/// </summary>
public static class MigrationStrengthSearch
{
    /// <summary>
    /// Searches α for a weight <paramref name="weight"/> <c>[out, in]</c> whose inputs have <paramref name="statistics"/>
    /// (with second moments), to be quantized with <paramref name="weightSpec"/> and <paramref name="activationSpec"/>
    /// (either may be full precision).
    /// </summary>
    /// <exception cref="CalibrationException">The statistics have no data, no channel maxima or no second moment.</exception>
    public static MigrationStrengthChoice Run(string layerName, Tensor weight, LayerStatistics statistics, QuantSpec weightSpec, QuantSpec activationSpec, SvdQuantOptions options)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(statistics);
        ArgumentNullException.ThrowIfNull(options);
        if (statistics is not { HasData: true, ChannelAbsMax: not null, SecondMoment: not null } || statistics.SecondMomentWeight <= 0)
            throw new CalibrationException($"layer '{layerName}': SvdQuant's α search needs the per-channel input maxima and the input second moment from calibration, but the layer has none.");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var w = weight.detach().to(ScalarType.Float64);
        var h = statistics.SecondMoment.to(ScalarType.Float64, w.device) / statistics.SecondMomentWeight;
        var lo = statistics.ChannelMin!.to(ScalarType.Float64, w.device);
        var hi = statistics.ChannelMax!.to(ScalarType.Float64, w.device);
        var alphas = (options.IncludeUnsmoothed ? new double?[] { null } : []).Concat(options.Alphas.Select(a => (double?)a));
        var candidates = new List<MigrationStrengthCandidate>();
        foreach (var alpha in alphas)
        {
            using var candidateScope = torch.NewDisposeScope();
            var lambda = alpha is { } a
                ? SmoothQuantTransform.Factors(weight, statistics.ChannelAbsMax, a).to(ScalarType.Float64, w.device)
                : torch.ones(w.shape[1], dtype: ScalarType.Float64, device: w.device);
            var smoothed = w * lambda.unsqueeze(0);
            var residual = smoothed;
            if (options.Rank > 0)
            {
                using var svd = SvdQuantTransform.Decompose(smoothed, options);
                residual = smoothed - svd.Reconstruct().to(ScalarType.Float64);
            }
            var quantized = weightSpec.IsEnabled
                ? FakeQuantizer.QuantizeDequantize(residual.to(weight.dtype), weightSpec).to(ScalarType.Float64)
                : residual;
            var inv = lambda.reciprocal();
            var delta = (quantized - residual) * inv.unsqueeze(0);     // ΔW·diag(1/λ): then tr(ΔW H̃ ΔWᵀ) = tr(δ H δᵀ)
            double error = (delta.mm(h) * delta).sum().item<double>();
            if (activationSpec.IsEnabled)
            {
                double step = RoundingStep(activationSpec, (lo * inv).min().item<double>(), (hi * inv).max().item<double>());
                error += step * step / 12 * quantized.square().sum().item<double>();
            }
            candidates.Add(new MigrationStrengthCandidate(alpha, error));
        }
        var best = candidates.Aggregate((x, y) => y.Error < x.Error ? y : x);
        return new MigrationStrengthChoice(best.Alpha, candidates);
    }

    // The step of a uniform grid over [min, max] (symmetric: over ±max|·|) under the spec's levels and clip ratio.
    private static double RoundingStep(QuantSpec spec, double min, double max) =>
        spec.Symmetric
            ? spec.ClipRatio * Math.Max(Math.Abs(min), Math.Abs(max)) / spec.QMax
            : spec.ClipRatio * (max - min) / (spec.QMax - spec.QMin);
}
