using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.TqDit;

/// <summary>The steps TQ-DiT chose for one linear layer, and the weighted output error before and after the search.</summary>
/// <param name="Layer">The layer's name.</param>
/// <param name="WeightSteps">One weight step per part (three for a fused qkv, else one), in row order.</param>
/// <param name="ActivationSteps">One input step per TGQ group (empty when activations are not quantized); with
/// <see cref="PostGeluMultiRegion"/>, MRQ's positive step.</param>
/// <param name="OverallActivationStep">The input step searched on all rows, used outside any calibrated step (0 when activations are not quantized).</param>
/// <param name="InitialError">Weighted output error <c>mean((g ⊙ (O_fp − O_q))²)</c> at the initial steps Δ0.</param>
/// <param name="FinalError">The same error at the chosen steps.</param>
public sealed record TqDitLayerResult(string Layer, IReadOnlyList<double> WeightSteps, IReadOnlyList<double> ActivationSteps, double OverallActivationStep,
    double InitialError, double FinalError)
{
    /// <summary>
    /// True when the layer's inputs use MRQ after GELU (<see cref="TqDitGrid.PostGelu"/>): the activation steps are the
    /// positive steps, negative inputs use the fixed step <c>0.16997/2^(k−1)</c>.
    /// </summary>
    public bool PostGeluMultiRegion { get; init; }
}

/// <summary>
/// TQ-DiT's step search for one linear layer <c>O = X·Wᵀ + b</c> (Hessian-guided optimization, HO): each step is chosen on the
/// grid <see cref="TqDitGrid.Candidates"/> to maximize <c>−mean((g ⊙ (O_fp − O_q))²)</c>, g being the gradient of the loss
/// at the layer's output (the diagonal Gauss–Newton / Fisher approximation of the output Hessian), alternating
/// <see cref="TqDitOptions.Rounds"/> rounds of weight steps (every part, the other steps fixed) and activation steps (every
/// TGQ group). Weights are per tensor (per part), activations per tensor (per group); with MRQ after GELU (fc2's input), the
/// activation step searched is the positive step of <see cref="TqDitGrid.PostGelu"/> on the same grid, from
/// <c>Δ0 = max(x⁺) / (2^(k−1) − 0.5)</c>, and the negative step stays fixed.
/// </summary>
public static class TqDitLayerSearch
{
    /// <summary>Searches the steps of one layer on its calibration rows.</summary>
    /// <param name="layer">The layer's name (for the result and messages).</param>
    /// <param name="weight">The float weight <c>[out, in]</c>.</param>
    /// <param name="bias">The bias <c>[out]</c>, or null.</param>
    /// <param name="x">Calibration inputs <c>[rows, in]</c>.</param>
    /// <param name="g">Loss gradients at the layer output for the same rows, <c>[rows, out]</c>.</param>
    /// <param name="rowGroups">The TGQ group of each row (null: all rows in group 0).</param>
    /// <param name="groups">Number of TGQ groups (≥ 1); a group without rows gets the overall step.</param>
    /// <param name="parts">Number of equal row parts of the weight with their own step (3 for a fused qkv, else 1).</param>
    /// <param name="weightBits">Weight bits (2–8).</param>
    /// <param name="activationBits">Activation bits (2–8), or 16 for unquantized inputs.</param>
    /// <param name="options">Grid and rounds.</param>
    /// <param name="cancellationToken">Checked between candidates.</param>
    /// <param name="postGeluMultiRegion">Quantize the inputs with MRQ after GELU (<see cref="TqDitGrid.PostGelu"/>) and search its
    /// positive step (fc2's input, <see cref="TqDitOptions.PostGeluMultiRegion"/>); default false: the symmetric per-tensor step.</param>
    public static TqDitLayerResult Search(string layer, Tensor weight, Tensor? bias, Tensor x, Tensor g, int[]? rowGroups, int groups, int parts,
        int weightBits, int activationBits, TqDitOptions options, CancellationToken cancellationToken = default, bool postGeluMultiRegion = false)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(g);
        ArgumentNullException.ThrowIfNull(options);
        long rows = x.shape[0], outF = weight.shape[0];
        if (x.Dimensions != 2 || x.shape[1] != weight.shape[1]) throw new ArgumentException($"{layer}: inputs [{string.Join(", ", x.shape)}] do not match weight [{string.Join(", ", weight.shape)}].", nameof(x));
        if (g.Dimensions != 2 || g.shape[0] != rows || g.shape[1] != outF) throw new ArgumentException($"{layer}: gradients [{string.Join(", ", g.shape)}] do not match [{rows}, {outF}].", nameof(g));
        if (parts < 1 || outF % parts != 0) throw new ArgumentException($"{layer}: {outF} output rows do not split into {parts} parts.", nameof(parts));
        if (rowGroups is not null && rowGroups.Length != rows) throw new ArgumentException($"{layer}: {rowGroups.Length} row groups for {rows} rows.", nameof(rowGroups));
        if (groups < 1) throw new ArgumentOutOfRangeException(nameof(groups));
        bool quantizeInputs = activationBits != Quantization.QuantSpec.FullPrecisionBits;
        bool mrq = postGeluMultiRegion && quantizeInputs;

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var w = weight.detach().to(ScalarType.Float32);
        var b = bias?.detach().to(ScalarType.Float32);
        var xf = x.detach().to(ScalarType.Float32);
        var g2 = g.detach().to(ScalarType.Float32).square();
        var ofp = Linear(xf, w, b);
        var (wmin, wmax) = TqDitGrid.LibraryRange(weightBits);
        var (amin, amax) = quantizeInputs ? TqDitGrid.LibraryRange(activationBits) : (0, 0);
        long partRows = outF / parts;

        // Row indices of each group (as tensors), for the per-group activation search.
        var groupRows = new Tensor?[groups];
        for (int k = 0; k < groups; k++)
        {
            var idx = rowGroups is null ? (k == 0 ? Enumerable.Range(0, (int)rows).ToArray() : []) : Enumerable.Range(0, (int)rows).Where(r => rowGroups[r] == k).ToArray();
            groupRows[k] = idx.Length == 0 ? null : torch.tensor(idx.Select(i => (long)i).ToArray());
        }

        var wd0 = new double[parts];
        for (int p = 0; p < parts; p++) wd0[p] = TqDitGrid.InitialStep(w.narrow(0, p * partRows, partRows).abs().max().item<float>(), weightBits);
        // Δ0 of the input: from max|x| for the symmetric step; for MRQ's positive step (codes 0…2^(k−1) − 1) from max(x⁺).
        double InputStep0(Tensor rows) => TqDitGrid.InitialStep(mrq ? Math.Max(rows.max().item<float>(), 0) : rows.abs().max().item<float>(), activationBits);
        Tensor QuantizeInput(Tensor rows, double d) => mrq ? TqDitGrid.PostGelu(rows, activationBits, d) : TqDitGrid.FakeQuantize(rows, d, amin, amax);
        double ad0All = quantizeInputs ? InputStep0(xf) : 0;
        var ad0 = new double[groups];
        for (int k = 0; k < groups; k++)
            ad0[k] = !quantizeInputs ? 0 : groupRows[k] is { } r ? InputStep0(xf.index_select(0, r)) : ad0All;
        var wd = (double[])wd0.Clone();
        var ad = (double[])ad0.Clone();

        // The quantized input of every row, each row with its group's step.
        Tensor QuantizedInputs()
        {
            if (!quantizeInputs) return xf.alias();
            var xq = torch.empty_like(xf);
            for (int k = 0; k < groups; k++)
                if (groupRows[k] is { } r) xq.index_copy_(0, r, QuantizeInput(xf.index_select(0, r), ad[k]));
            return xq;
        }
        Tensor QuantizedWeight()
        {
            var parts_ = Enumerable.Range(0, parts).Select(p => TqDitGrid.FakeQuantize(w.narrow(0, p * partRows, partRows), wd[p], wmin, wmax)).ToArray();
            return torch.cat(parts_, 0);
        }
        double Error(Tensor oq, Tensor reference, Tensor weights) => ((reference - oq).square() * weights).mean().item<float>();

        double initial;
        using (var s0 = torch.NewDisposeScope()) initial = Error(Linear(QuantizedInputs(), QuantizedWeight(), b), ofp, g2);

        for (int round = 0; round < options.Rounds; round++)
        {
            // Weight round: each part's step with the inputs quantized at the current activation steps.
            using (var sw = torch.NewDisposeScope())
            {
                var xq = QuantizedInputs();
                for (int p = 0; p < parts; p++)
                {
                    var wp = w.narrow(0, p * partRows, partRows);
                    var bp = b?.narrow(0, p * partRows, partRows);
                    var refP = ofp.narrow(1, p * partRows, partRows);
                    var gP = g2.narrow(1, p * partRows, partRows);
                    wd[p] = Best(TqDitGrid.Candidates(wd0[p], options.Alpha, options.Beta, options.GridSteps),
                        d => Error(Linear(xq, TqDitGrid.FakeQuantize(wp, d, wmin, wmax), bp), refP, gP), cancellationToken);
                }
            }
            if (!quantizeInputs) continue;
            // Activation round: each group's step with the weight at the current steps, on that group's rows.
            using (var sa = torch.NewDisposeScope())
            {
                var wq = QuantizedWeight();
                for (int k = 0; k < groups; k++)
                {
                    if (groupRows[k] is not { } r) continue;
                    var xk = xf.index_select(0, r);
                    var refK = ofp.index_select(0, r);
                    var gK = g2.index_select(0, r);
                    ad[k] = Best(TqDitGrid.Candidates(ad0[k], options.Alpha, options.Beta, options.GridSteps),
                        d => Error(Linear(QuantizeInput(xk, d), wq, b), refK, gK), cancellationToken);
                }
            }
        }

        double overall = 0;
        if (quantizeInputs)
        {
            using var so = torch.NewDisposeScope();
            var wq = QuantizedWeight();
            overall = groups == 1 && groupRows[0] is not null ? ad[0]
                : Best(TqDitGrid.Candidates(ad0All, options.Alpha, options.Beta, options.GridSteps),
                    d => Error(Linear(QuantizeInput(xf, d), wq, b), ofp, g2), cancellationToken);
            for (int k = 0; k < groups; k++)
                if (groupRows[k] is null) ad[k] = overall;
        }
        double final;
        using (var sf = torch.NewDisposeScope()) final = Error(Linear(QuantizedInputs(), QuantizedWeight(), b), ofp, g2);
        return new TqDitLayerResult(layer, wd, quantizeInputs ? ad : [], overall, initial, final) { PostGeluMultiRegion = mrq };
    }

    /// <summary>The candidate with the smallest <paramref name="error"/> (the first one on ties).</summary>
    public static double Best(IReadOnlyList<double> candidates, Func<double, double> error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(error);
        double best = double.NaN, bestError = double.PositiveInfinity;
        foreach (var d in candidates)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            double e = error(d);
            if (e < bestError || double.IsNaN(best))
            {
                best = d;
                bestError = e;
            }
        }
        return best;
    }

    private static Tensor Linear(Tensor x, Tensor w, Tensor? b) => nn.functional.linear(x, w, b);
}
