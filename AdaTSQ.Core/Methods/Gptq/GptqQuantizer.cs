using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Methods.Gptq;

/// <summary>
/// GPTQ (Frantar et al. 2023): quantizes a weight column by column and spreads each column's
/// rounding error over the columns not yet quantized, using the inverse Hessian H⁻¹ of the layer's
/// reconstruction loss, H = 2/N·Σ x·xᵀ (here from <see cref="LayerStatistics.SecondMoment"/>, so a
/// temporally weighted Σ α·x·xᵀ works the same way). As in the reference <c>gptq.py</c>: dead inputs
/// (diag H = 0) get H_jj = 1 and zero weight, H is damped by PercDamp·mean(diag H), the upper
/// Cholesky factor of H⁻¹ drives the updates inside blocks of <c>BlockSize</c> columns with a lazy
/// update of the remaining columns after each block, group parameters are found when a group starts
/// (or up front with act-order), and columns can go in act-order. Computation is float64. A Hessian that
/// is not positive definite after damping gets ten times more damping (logged), up to
/// <see cref="GptqOptions.MaxDampingRetries"/> times, and then a typed error — never NaN weights.
/// </summary>
public sealed class GptqQuantizer : IQuantizer
{
    private readonly ILogger _logger;

    /// <summary>Creates the quantizer.</summary>
    public GptqQuantizer(GptqOptions? options = null, ILogger? logger = null)
    {
        Options = options ?? new GptqOptions();
        var problems = Options.FindProblems();
        if (problems.Count > 0) throw new ArgumentException(string.Join(" ", problems), nameof(options));
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>The options.</summary>
    public GptqOptions Options { get; }

    /// <inheritdoc />
    public string Name => "GPTQ";

    /// <inheritdoc />
    public CalibrationRequirements Requirements => CalibrationRequirements.SecondMoments;

    /// <inheritdoc />
    public QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, LayerStatistics? statistics, CancellationToken cancellationToken = default)
    {
        spec.Validate(QuantTarget.Weight, weight.shape[^1], $"layer '{layerName}'");
        if (!spec.IsEnabled) throw new LayerQuantizationException(layerName, "GPTQ was asked to quantize with a full-precision spec.");
        var h = statistics?.SecondMoment ?? throw new LayerQuantizationException(layerName, "GPTQ needs the input second moment Σ x·xᵀ: calibrate with CalibrationRequirements.SecondMoments.");
        using var hessian = h.to(ScalarType.Float64, weight.device);
        return Quantize(layerName, weight, spec, hessian, cancellationToken);
    }

    /// <summary>
    /// Quantizes <paramref name="weight"/> <c>[out, in]</c> given the Hessian <paramref name="hessian"/>
    /// <c>[in, in]</c> (any positive scale: only its shape matters). Usable without any model.
    /// </summary>
    public QuantizedTensor Quantize(string layerName, Tensor weight, QuantSpec spec, Tensor hessian, CancellationToken cancellationToken = default)
    {
        long rows = weight.shape[0], cols = weight.shape[1];
        if (!hessian.shape.SequenceEqual(new[] { cols, cols }))
            throw new LayerQuantizationException(layerName, $"Hessian has shape [{string.Join(", ", hessian.shape)}], expected [{cols}, {cols}].");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var w = weight.detach().to(ScalarType.Float64).clone();
        var H = hessian.to(ScalarType.Float64).clone();
        var dead = H.diagonal() == 0;
        if (dead.any().item<bool>())
        {
            H.diagonal().masked_fill_(dead, 1.0);
            w.index_fill_(1, dead.nonzero().squeeze(1), 0.0);
        }
        Tensor? perm = null;
        if (Options.ActOrder)
        {
            perm = H.diagonal().argsort(descending: true);
            w = w.index_select(1, perm);
            H = H.index_select(0, perm).index_select(1, perm);
        }
        var hinv = InverseCholesky(layerName, H);

        int group = spec.Granularity == QuantGranularity.PerGroup ? spec.GroupSize : (int)cols;
        bool perTensor = spec.Granularity == QuantGranularity.PerTensor;
        int groups = (int)(cols / group);
        var scales = new Tensor[groups];
        var zeros = new Tensor?[groups];
        // Group parameters are owned here (detached from the block scopes they are found in) and disposed once combined.
        void FindParams(int g, Tensor columns)
        {
            scales[g]?.Dispose();
            zeros[g]?.Dispose();
            var src = perTensor ? columns.reshape(1, -1) : columns;
            var p = Options.ClipSearch is { } search
                ? ClipSearch.FindParams(src, spec, search)
                : QuantParams.FromRange(src.amin([1], keepdim: true), src.amax([1], keepdim: true), spec);
            scales[g] = (perTensor ? p.Scale.expand(rows, 1) : p.Scale).to(ScalarType.Float64).DetachFromDisposeScope();
            zeros[g] = p.Zero is null ? null : (perTensor ? p.Zero.expand(rows, 1) : p.Zero).to(ScalarType.Float64).DetachFromDisposeScope();
            p.Dispose();
        }
        // Static groups: with act-order the parameters come from the original, unpermuted column groups.
        if (Options.ActOrder || group == cols)
        {
            using var original = weight.detach().to(ScalarType.Float64);
            for (int g = 0; g < groups; g++) FindParams(g, original[.., (g * group)..((g + 1) * group)]);
        }

        var q = torch.zeros_like(w);
        var groupOf = perm is null ? null : (perm / group).to(ScalarType.Int64).data<long>().ToArray();
        int block = Options.BlockSize;
        for (long i1 = 0; i1 < cols; i1 += block)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var blockScope = torch.NewDisposeScope();
            long i2 = Math.Min(i1 + block, cols), count = i2 - i1;
            var w1 = w[.., (int)i1..(int)i2].clone();
            var err1 = torch.zeros_like(w1);
            var hinv1 = hinv[(int)i1..(int)i2, (int)i1..(int)i2];
            for (long i = 0; i < count; i++)
            {
                long col = i1 + i;
                int g = groupOf is null ? (int)(col / group) : (int)groupOf[col];
                if (!Options.ActOrder && group != cols && col % group == 0) FindParams(g, w[.., (int)col..(int)(col + group)]);
                var wc = w1[.., (int)i];
                var d = hinv1[i, i];
                var qc = QuantizeColumn(wc, scales[g], zeros[g], spec);
                q[.., (int)col] = qc;
                var e = (wc - qc) / d;
                w1[.., (int)i..] -= e.unsqueeze(1).matmul(hinv1[i, (int)i..].unsqueeze(0));
                err1[.., (int)i] = e;
            }
            // Write the updated block back (later groups in this block read w when they start) and push the error on.
            w[.., (int)i1..(int)i2] = w1;
            if (i2 < cols) w[.., (int)i2..] -= err1.matmul(hinv[(int)i1..(int)i2, (int)i2..]);
        }
        if (perm is not null) q = q.index_select(1, perm.argsort());
        if (!q.isfinite().all().item<bool>())
            throw new LayerQuantizationException(layerName, "GPTQ produced non-finite weights; the Hessian is too ill-conditioned even after damping.");

        var scale = torch.cat(scales, dim: 1).to(ScalarType.Float32);                     // [rows, groups]
        var zero = zeros[0] is null ? null : torch.cat(zeros.Select(z => z!).ToArray(), dim: 1).to(ScalarType.Float32);
        foreach (var t in scales) t.Dispose();
        foreach (var t in zeros) t?.Dispose();
        if (perTensor) { scale = scale[..1, ..1]; zero = zero?[..1, ..1]; }
        var parameters = new QuantParams(scale.unsqueeze(-1), zero?.unsqueeze(-1));
        var dequantized = q.to(weight.dtype);
        return QuantizedTensor.FromParams(dequantized, spec, parameters);
    }

    private static Tensor QuantizeColumn(Tensor column, Tensor scale, Tensor? zero, QuantSpec spec)
    {
        var s = scale.squeeze(1);
        var code = (column / s).round();
        if (zero is not null) code = code + zero.squeeze(1);
        code = code.clamp(spec.QMin, spec.QMax);
        return (zero is null ? code : code - zero.squeeze(1)) * s;
    }

    /// <summary>Upper Cholesky factor of H⁻¹ after damping; more damping (logged) while H is not positive definite.</summary>
    private Tensor InverseCholesky(string layerName, Tensor h)
    {
        // The reference damps by percdamp·mean(diag H); |diag| keeps the damping positive for an indefinite H.
        double damp = Options.PercDamp * Math.Max(h.diagonal().abs().mean().item<double>(), 1e-12);
        for (int attempt = 0; ; attempt++)
        {
            var damped = h + torch.eye(h.shape[0], dtype: ScalarType.Float64, device: h.device) * damp;
            var (l, info) = torch.linalg.cholesky_ex(damped);
            if (info.item<int>() == 0)
            {
                var inv = torch.cholesky_inverse(l);
                var (l2, info2) = torch.linalg.cholesky_ex((inv + inv.mT) / 2);
                if (info2.item<int>() == 0) return l2.mT.contiguous();
            }
            if (attempt >= Options.MaxDampingRetries)
                throw new LayerQuantizationException(layerName, $"the Hessian is not positive definite even with damping {damp:G3}.");
            damp *= 10;
            _logger.LogWarning("GPTQ: layer {Layer}: Hessian not positive definite, retrying with damping {Damp:G3}", layerName, damp);
        }
    }
}
