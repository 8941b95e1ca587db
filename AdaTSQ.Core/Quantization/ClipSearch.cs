using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Quantization;

/// <summary>
/// Options of the MSE clipping search: candidate ranges <c>[p·min, p·max]</c> for
/// <c>p = 1, 1 − 1/Grid, …, 1 − MaxShrink</c>, keeping per row the one with the smallest
/// <c>Σ |Q(x) − x|^Norm</c> (the search of GPTQ's reference quantizer with <c>mse=True</c>).
/// </summary>
public sealed record ClipSearchOptions
{
    /// <summary>Candidates per unit of shrink (reference: 100).</summary>
    public int Grid { get; init; } = 100;

    /// <summary>Largest shrink tried, in (0, 1) (reference: 0.8).</summary>
    public double MaxShrink { get; init; } = 0.8;

    /// <summary>Exponent of the error (reference: 2.4).</summary>
    public double Norm { get; init; } = 2.4;

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (Grid <= 0) p.Add($"clip search grid {Grid} must be positive.");
        if (!(MaxShrink > 0 && MaxShrink < 1)) p.Add($"clip search max shrink {MaxShrink} must be in (0, 1).");
        if (!(Norm > 0) || double.IsInfinity(Norm)) p.Add($"clip search norm {Norm} must be a positive finite number.");
        return p;
    }
}

/// <summary>The MSE clipping search (see <see cref="ClipSearchOptions"/>).</summary>
public static class ClipSearch
{
    /// <summary>
    /// Parameters for each row of <paramref name="rows"/> <c>[R, G]</c> (one quantization group per row)
    /// under <paramref name="spec"/>, with the clipping ratio that minimises the row's error.
    /// Returns scales (and zeros) shaped <c>[R, 1]</c>.
    /// </summary>
    public static QuantParams FindParams(Tensor rows, QuantSpec spec, ClipSearchOptions options)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(options);
        if (rows.Dimensions != 2) throw new ArgumentException($"rows have shape [{string.Join(", ", rows.shape)}], expected [R, G].", nameof(rows));
        using var scope = torch.NewDisposeScope();
        var x = rows.detach().to(ScalarType.Float32);
        var min = x.amin([1], keepdim: true);
        var max = x.amax([1], keepdim: true);
        var best = QuantParams.FromRange(min, max, spec);
        var bestScale = best.Scale.clone().DetachFromDisposeScope();
        var bestZero = best.Zero?.clone().DetachFromDisposeScope();
        var bestError = torch.full([x.shape[0], 1], double.PositiveInfinity, dtype: ScalarType.Float32, device: x.device);
        int candidates = (int)(options.MaxShrink * options.Grid);
        for (int i = 0; i <= candidates; i++)
        {
            using var step = torch.NewDisposeScope();
            double p = 1 - (double)i / options.Grid;
            using var candidate = QuantParams.FromRange(min * p, max * p, spec);
            var code = (x / candidate.Scale).round();
            if (candidate.Zero is not null) code = code + candidate.Zero;
            code = code.clamp(spec.QMin, spec.QMax);
            var deq = (candidate.Zero is null ? code : code - candidate.Zero) * candidate.Scale;
            var error = (deq - x).abs().pow(options.Norm).sum([1], keepdim: true);
            var better = error < bestError;
            bestError.copy_(torch.where(better, error, bestError));
            bestScale.copy_(torch.where(better, candidate.Scale, bestScale));
            if (bestZero is not null) bestZero.copy_(torch.where(better, candidate.Zero!, bestZero));
        }
        best.Dispose();
        return new QuantParams(bestScale, bestZero);
    }
}
