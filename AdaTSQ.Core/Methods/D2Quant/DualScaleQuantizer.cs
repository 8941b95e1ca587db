using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.D2Quant;

/// <summary>
/// D²Quant's dual-scale quantizer (DSQ): approximates a weight <c>W [out, in]</c> by <c>Ŵ = Q̂ · diag(s_c)</c>, where
/// <c>Q̂</c> is an ordinary per-group (or per-channel) quantized matrix — integer codes times the usual per-output-group
/// scale <c>s</c> — and <c>s_c [in]</c> is a per-input-channel scale (the paper's <c>diag(s_c)·Q·diag(s)</c> in the
/// <c>[in, out]</c> convention). It alternates two steps, minimizing the reconstruction error <c>‖W − Q̂·diag(s_c)‖²_F</c>:
/// <list type="number">
/// <item><b>Q step.</b> Quantize <c>W / s_c</c> (column-wise) round-to-nearest. Two grids are tried: a fresh min/max grid
/// of <c>W / s_c</c>, and the previous round's grid (re-rounding on a fixed grid is optimal for any positive column weights,
/// since <c>(W − s_c·q)² = s_c²·(W/s_c − q)²</c> separates per element). The one with the smaller error is kept, so the
/// step never increases the error.</item>
/// <item><b>s_c step.</b> With <c>Q̂</c> fixed, each column's scale has the closed-form least-squares value
/// <c>s_c[i] = Σ_o W[o,i]·Q̂[o,i] / Σ_o Q̂[o,i]²</c> (kept unchanged when that is not positive or the column is all zero),
/// which cannot increase the error either.</item>
/// </list>
/// It starts from the best of round-to-nearest (<c>s_c = 1</c>) and a few column-magnitude scales (<see cref="StartExponents"/>),
/// so its error is never above RTN's on the same spec.
/// </summary>
public static class DualScaleQuantizer
{
    /// <summary>
    /// Fits <paramref name="weight"/> (<c>[out, in]</c>, float, finite; not modified) under <paramref name="spec"/> (an enabled
    /// weight spec) with <paramref name="rounds"/> alternations. The result owns its tensors.
    /// </summary>
    /// <param name="weight">The float weight.</param>
    /// <param name="spec">The weight spec of <c>Q̂</c>.</param>
    /// <param name="rounds">Alternations (0: round-to-nearest).</param>
    /// <param name="tolerance">Stop when a round lowers the relative error by less than this.</param>
    /// <param name="cancellationToken">Checked once per round.</param>
    public static DualScaleFit Fit(Tensor weight, QuantSpec spec, int rounds, double tolerance = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(spec);
        if (weight.Dimensions != 2) throw new ArgumentException($"DSQ needs a [out, in] weight, got shape [{string.Join(", ", weight.shape)}].", nameof(weight));
        if (!spec.IsEnabled) throw new ArgumentException("DSQ needs an enabled (quantized) weight spec.", nameof(spec));
        ArgumentOutOfRangeException.ThrowIfNegative(rounds);
        spec.Validate(QuantTarget.Weight, weight.shape[1], "DSQ");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var w = weight.detach().to(ScalarType.Float32);
        var w64 = w.to(ScalarType.Float64);
        double norm2 = Math.Max(w64.square().sum().item<double>(), double.Epsilon);
        var errors = new List<double>();
        // Start: round-to-nearest (s_c = 1) and the column-magnitude starts s_c = (max_o |W[o,i]| / mean_i)^α; the best is kept.
        var columnMax = w.abs().amax(0);
        columnMax = columnMax.clamp_min(Math.Max(columnMax.max().item<float>(), 1e-30f) * 1e-6f);
        var relative = columnMax / columnMax.mean();
        Tensor columnScale = torch.ones(weight.shape[1], dtype: ScalarType.Float32);
        QuantizedTensor? current = null;
        double error = double.PositiveInfinity, rtnError = double.NaN;
        try
        {
            foreach (double alpha in StartExponents)
            {
                var candidateScale = alpha == 0 ? torch.ones(weight.shape[1], dtype: ScalarType.Float32) : relative.pow(alpha);
                var candidate = Owned(QuantizedTensor.Quantize(w / candidateScale.unsqueeze(0), spec));
                double e = Error(w64, candidate, candidateScale) / norm2;
                if (alpha == 0) rtnError = e;
                if (e < error)
                {
                    current?.Dispose();
                    (current, error, columnScale) = (candidate, e, candidateScale);
                }
                else candidate.Dispose();
            }
            errors.Add(error);
            if (current is null) throw new InvalidOperationException("DSQ found no start.");
            for (int r = 0; r < rounds; r++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                double before = error;
                // s_c step: least squares per column, Q̂ fixed.
                using (var roundScope = torch.NewDisposeScope())
                {
                    var q = current.Dequantize().to(ScalarType.Float64);
                    var num = (w64 * q).sum(dim: 0);
                    var den = q.square().sum(dim: 0);
                    var fitted = num / den.clamp_min(1e-300);
                    var ok = (den > 0) & (num > 0) & fitted.isfinite();
                    var next = torch.where(ok, fitted, columnScale.to(ScalarType.Float64)).to(ScalarType.Float32);
                    double eNext = Error(w64, current, next) / norm2;
                    if (eNext <= error) // optimal in exact arithmetic; the guard only catches float32 rounding of s_c
                    {
                        columnScale.copy_(next);
                        error = eNext;
                    }
                }
                errors.Add(error);
                // Q step: re-quantize W / s_c on a fresh grid and on the previous grid; keep the better.
                using (var qScope = torch.NewDisposeScope())
                {
                    var scaled = w / columnScale.unsqueeze(0);
                    var fresh = Owned(QuantizedTensor.Quantize(scaled, spec));
                    var previousGrid = new QuantParams(current.Parameters.Scale.clone().DetachFromDisposeScope(),
                        current.Parameters.Zero?.clone().DetachFromDisposeScope());
                    var rerounded = Owned(QuantizedTensor.FromParams(scaled, spec, previousGrid));
                    double eFresh = Error(w64, fresh, columnScale) / norm2;
                    double eReround = Error(w64, rerounded, columnScale) / norm2;
                    var (keep, drop, e) = eFresh <= eReround ? (fresh, rerounded, eFresh) : (rerounded, fresh, eReround);
                    drop.Dispose();
                    if (e <= error)
                    {
                        current.Dispose();
                        current = keep;
                        error = e;
                    }
                    else keep.Dispose(); // cannot happen in exact arithmetic (the re-rounding is optimal on its grid); guards rounding noise
                }
                errors.Add(error);
                if (before - error < tolerance * Math.Max(before, double.Epsilon)) break;
            }
            return new DualScaleFit(current, columnScale.DetachFromDisposeScope(), errors, rtnError);
        }
        catch
        {
            current?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The exponents α of the starting column scales <c>s_c = (max_o |W[o,i]| / mean_i max_o |W[o,i]|)^α</c> tried before the
    /// alternation (0 is round-to-nearest). An assumption: the paper's initialization is not public. Without a start other
    /// than 1, a column that an outlier column's scale rounds to all zeros can never recover (its least-squares s_c is undefined).
    /// </summary>
    public static IReadOnlyList<double> StartExponents { get; } = [0, 0.25, 0.5, 0.75, 1];

    // Takes a quantized tensor's tensors out of every dispose scope: this code disposes them itself.
    private static QuantizedTensor Owned(QuantizedTensor q)
    {
        q.Codes.DetachFromDisposeScope();
        q.Parameters.Scale.DetachFromDisposeScope();
        q.Parameters.Zero?.DetachFromDisposeScope();
        return q;
    }

    /// <summary>Reconstruction error <c>‖W − Q̂·diag(s_c)‖²_F</c> of a fit (<c>w64</c> in float64).</summary>
    private static double Error(Tensor w64, QuantizedTensor q, Tensor columnScale)
    {
        using var scope = torch.NewDisposeScope();
        var approx = q.Dequantize().to(ScalarType.Float64) * columnScale.to(ScalarType.Float64).unsqueeze(0);
        return (w64 - approx).square().sum().item<double>();
    }
}

/// <summary>
/// A DSQ fit: <see cref="Quantized"/> stands for <c>Q̂</c> (codes and per-group scales of <c>W / s_c</c>) and
/// <see cref="ColumnScale"/> for <c>s_c</c>; <c>W ≈ Q̂ · diag(s_c)</c>. Owns both; dispose it (or take them over).
/// </summary>
public sealed class DualScaleFit : IDisposable
{
    internal DualScaleFit(QuantizedTensor quantized, Tensor columnScale, IReadOnlyList<double> errors, double rtnError)
    {
        RtnRelativeError = rtnError;
        Quantized = quantized;
        ColumnScale = columnScale;
        RelativeErrors = errors;
    }

    /// <summary><c>Q̂</c>: the quantized <c>W / s_c</c>.</summary>
    public QuantizedTensor Quantized { get; }

    /// <summary><c>s_c [in]</c>, float32, positive.</summary>
    public Tensor ColumnScale { get; }

    /// <summary>
    /// <c>‖W − Q̂·diag(s_c)‖²_F / ‖W‖²_F</c> after each step: first the best start (see <see cref="DualScaleQuantizer.StartExponents"/>; never above
    /// <see cref="RtnRelativeError"/>), then per round the s_c step and the
    /// Q step. Never increasing.
    /// </summary>
    public IReadOnlyList<double> RelativeErrors { get; }

    /// <summary><c>‖W − Q̂_RTN‖²_F / ‖W‖²_F</c> of plain round-to-nearest under the same spec, for comparison.</summary>
    public double RtnRelativeError { get; }

    /// <summary>The reconstruction <c>Q̂ · diag(s_c)</c> (a new tensor, in the weight's dtype).</summary>
    public Tensor Reconstruct()
    {
        using var scope = torch.NewDisposeScope();
        var q = Quantized.Dequantize();
        return (q * ColumnScale.to(q.dtype).unsqueeze(0)).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Quantized.Dispose();
        ColumnScale.Dispose();
    }
}
