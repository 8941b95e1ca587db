using AdaTSQ.Methods.Gptq;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Gptq;

/// <summary>
/// GPTQ against an independent oracle of the reference algorithm (Frantar et al.; IST-DASLab's
/// <c>gptq.py</c> with <c>quant.py</c>'s asymmetric min/max quantizer, which includes 0 in the range).
/// The oracle is the paper's sequential Optimal-Brain-Surgeon form, written from the equations and
/// not from the blocked code: quantize column i, spread its error over the remaining columns with
/// <c>H⁻¹[i, j] / H⁻¹[i, i]</c>, then remove i from <c>H⁻¹</c> by Gaussian elimination
/// (<c>H⁻¹ ← H⁻¹ − H⁻¹[:, i] H⁻¹[i, :] / H⁻¹[i, i]</c>). No Cholesky, no blocks, no lazy batching — the
/// blocked Cholesky formulation must give the same result up to rounding. python/torch cannot run
/// here, so the reference itself cannot be executed; its quantizer grid is reproduced exactly
/// (asymmetric: scale = (max−min)/(2^b−1), zero = round(−min/scale)), and the criterion —
/// relative output error within 2 % of the reference's — is checked against this oracle. With groups
/// smaller than the block, the oracle reproduces where the reference takes a group's range from
/// (the block-start weights; see <see cref="OracleWithScales"/>), and agreement is then exact.
/// </summary>
public class GptqReferenceTests
{

    /// <summary>
    /// The oracle: sequential OBS updates in float64. Group parameters are found when a group starts, from
    /// the weights as they were when the reference's block of <paramref name="blockSize"/> columns holding
    /// that column started: the reference <c>gptq.py</c> (without static groups) calls
    /// <c>find_params(W[:, i1+i : i1+i+groupsize])</c> on the full W, whose columns of the current block
    /// receive the in-block error propagation only in its copy W1, so a group that starts inside a block
    /// sees the block-start weights. In the sequential form those are the weights after the columns before
    /// the block were quantized. <paramref name="groupParamsFromUpdatedWeights"/> takes them from the fully
    /// updated weights instead (the textbook OBS reading), to show the two differ.
    /// </summary>
    private static (Tensor Q, Tensor Scales) OracleWithScales(Tensor weight, Tensor h, int bits, int groupSize, bool actOrder, int blockSize, bool groupParamsFromUpdatedWeights = false, double percDamp = 0.01)
    {
        using var scope = torch.NewDisposeScope();
        var w = weight.to(ScalarType.Float64).clone();
        var hh = h.to(ScalarType.Float64).clone();
        long rows = w.shape[0], cols = w.shape[1];
        long[] order = Enumerable.Range(0, (int)cols).Select(i => (long)i).ToArray();
        if (actOrder) order = hh.diagonal().argsort(descending: true).data<long>().ToArray();
        double damp = percDamp * hh.diagonal().mean().item<double>();
        var hinv = torch.linalg.inv(hh + torch.eye(cols, dtype: ScalarType.Float64) * damp);
        double maxq = (1 << bits) - 1;
        var q = torch.zeros_like(w);
        Tensor? scale = null, zero = null;
        var scales = new Dictionary<long, Tensor>();
        var remaining = new List<long>(order);
        // Static groups with act-order (as the reference's static_groups): parameters of the original column groups.
        Dictionary<long, (Tensor, Tensor)>? staticParams = null;
        // The grid in float32, as the reference (which runs GPTQ on W.float()) and the implementation find it.
        (Tensor, Tensor) Params(Tensor cols2d)
        {
            var lo = cols2d.amin([1]).to(ScalarType.Float32).clamp_max(0);
            var hi = cols2d.amax([1]).to(ScalarType.Float32).clamp_min(0);
            var s = ((hi - lo) / (float)maxq).clamp_min(1e-12f);
            return (s.to(ScalarType.Float64), (-lo / s).round().to(ScalarType.Float64));
        }
        if (actOrder && groupSize > 0)
        {
            staticParams = new();
            for (long g = 0; g < cols / groupSize; g++) staticParams[g] = Params(weight.to(ScalarType.Float64)[.., (int)(g * groupSize)..(int)((g + 1) * groupSize)]);
        }
        else if (groupSize == 0) (scale, zero) = Params(w);
        var blockStart = w.clone();
        for (int step = 0; step < cols; step++)
        {
            long i = order[step];
            if (step % blockSize == 0) blockStart = w.clone();
            if (staticParams is not null) (scale, zero) = staticParams[i / groupSize];
            else if (groupSize > 0 && i % groupSize == 0) (scale, zero) = Params((groupParamsFromUpdatedWeights ? w : blockStart)[.., (int)i..(int)(i + groupSize)]);
            if (groupSize > 0) scales[i / groupSize] = scale!;
            var wi = w[.., (int)i];
            var qi = ((wi / scale!).round() + zero!).clamp(0, maxq).sub(zero!).mul(scale!);
            q[.., (int)i] = qi;
            remaining.Remove(i);
            if (remaining.Count == 0) break;
            double d = hinv[i, i].item<double>();
            var rest = torch.tensor(remaining.ToArray());
            var err = (wi - qi) / d;
            w.index_put_(w.index_select(1, rest) - err.unsqueeze(1).mm(hinv[i].index_select(0, rest).unsqueeze(0)), TensorIndex.Colon, TensorIndex.Tensor(rest));
            hinv = hinv - hinv[.., (int)i].unsqueeze(1).mm(hinv[(int)i].unsqueeze(0)) / d;
        }
        var allScales = groupSize > 0 ? torch.stack(scales.OrderBy(p => p.Key).Select(p => p.Value).ToArray(), dim: 1) : scale!.unsqueeze(1);
        return (q.MoveToOuterDisposeScope(), allScales.MoveToOuterDisposeScope());
    }

    private static Tensor Oracle(Tensor weight, Tensor h, int bits, int groupSize, bool actOrder, int blockSize)
    {
        var (q, scales) = OracleWithScales(weight, h, bits, groupSize, actOrder, blockSize);
        scales.Dispose();
        return q;
    }

    private static double OutputError(Tensor w, Tensor q, Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var wd = w.to(ScalarType.Float64);
        var xd = x.to(ScalarType.Float64);
        return (wd - q.to(ScalarType.Float64)).mm(xd.t()).norm().item<double>() / wd.mm(xd.t()).norm().item<double>();
    }

    [TestCase(4, 0, false)]
    [TestCase(3, 0, false)]
    [TestCase(4, 32, false)]
    [TestCase(4, 32, true)]
    [TestCase(3, 0, true)]
    public void OutputErrorIsWithinTwoPercentOfTheReferenceAlgorithm(int bits, int group, bool actOrder)
    {
        using var x = TestTensors.CorrelatedInputs(512, 128, 21);
        using var w = TestTensors.Randn(22, 48, 128);
        using var xd = x.to(ScalarType.Float64);
        using var h = xd.t().mm(xd) * (2.0 / 512);                      // H = 2/N Σ x xᵀ, as the reference
        using var expected = Oracle(w, h, bits, group, actOrder, blockSize: 32);
        var spec = QuantSpec.Weight(bits, group, symmetric: false);
        using var ours = new GptqQuantizer(new GptqOptions { ActOrder = actOrder, BlockSize = 32 }).Quantize("fc", w, spec, h);
        using var q = ours.Dequantize();
        double reference = OutputError(w, expected, x), got = OutputError(w, q, x);
        Assert.That(Math.Abs(got - reference) / reference, Is.LessThan(0.02), $"ours {got:G5}, reference algorithm {reference:G5}");
        // Beyond the criterion: the quantized weights agree almost everywhere (rounding ties may differ).
        using var same = (q.to(ScalarType.Float64) - expected).abs().lt(1e-4).to(ScalarType.Float64).mean();
        Assert.That(same.item<double>(), Is.GreaterThan(0.99));
    }

    [TestCase(4, 32, 128)]
    [TestCase(3, 32, 128)]
    [TestCase(4, 32, 48)]      // blocks 0–47, 48–95, 96–127: the group 32–63 straddles two blocks
    public void GroupsStartingInsideABlockTakeTheirRangeFromTheBlockStartWeights(int bits, int group, int block)
    {
        using var x = TestTensors.CorrelatedInputs(512, 128, 21);
        using var w = TestTensors.Randn(22, 48, 128);
        using var xd = x.to(ScalarType.Float64);
        using var h = xd.t().mm(xd) * (2.0 / 512);
        var (expected, expectedScales) = OracleWithScales(w, h, bits, group, actOrder: false, blockSize: block);
        using var _e = expected;
        using var _s = expectedScales;
        var spec = QuantSpec.Weight(bits, group, symmetric: false);
        using var ours = new GptqQuantizer(new GptqOptions { ActOrder = false, BlockSize = block }).Quantize("fc", w, spec, h);
        using var q = ours.Dequantize();
        using var scales = ours.Parameters.Scale.squeeze(-1).to(ScalarType.Float64);
        // The same algorithm: the same group ranges and the same codes, up to float32 storage.
        Assert.That(((scales - expectedScales).abs() / expectedScales).max().item<double>(), Is.LessThan(1e-6), "group scales");
        Assert.That((q.to(ScalarType.Float64) - expected).abs().max().item<double>(), Is.LessThan(1e-5), "quantized weights");

        // The case discriminates: group parameters from the in-block updated weights give other scales and codes.
        var (updated, updatedScales) = OracleWithScales(w, h, bits, group, actOrder: false, blockSize: block, groupParamsFromUpdatedWeights: true);
        using var _u = updated;
        using var _us = updatedScales;
        Assert.That(((updatedScales - expectedScales).abs() / expectedScales).max().item<double>(), Is.GreaterThan(1e-3));
        using var differ = (updated - expected).abs().gt(1e-5).to(ScalarType.Float64).mean();
        Assert.That(differ.item<double>(), Is.GreaterThan(0.01), "share of weights that differ");
    }

    [Test]
    public void ClipSearchLowersTheErrorOnHeavyTailedWeights()
    {
        // Student-t-like weights: a few large entries stretch the min/max range.
        using var gauss = TestTensors.Randn(30, 32, 128);
        using var chi = TestTensors.Randn(31, 32, 128).square() + 0.05;
        using var w = gauss / chi.sqrt();
        using var h = torch.eye(128, dtype: ScalarType.Float64);
        var spec = QuantSpec.Weight(3, 0, symmetric: false);
        using var plain = new GptqQuantizer().Quantize("fc", w, spec, h);
        using var searched = new GptqQuantizer(new GptqOptions { ClipSearch = new ClipSearchOptions() }).Quantize("fc", w, spec, h);
        using var pd = plain.Dequantize();
        using var sd = searched.Dequantize();
        double e1 = TestTensors.RelativeError(pd, w), e2 = TestTensors.RelativeError(sd, w);
        Assert.That(e2, Is.LessThan(0.9 * e1), $"3-bit weight error: {e1:P1} min/max, {e2:P1} with the clip search");
        using var ratio = searched.Parameters.Scale / plain.Parameters.Scale;
        Assert.That(ratio.max().item<float>(), Is.LessThanOrEqualTo(1.0001f), "the search only shrinks ranges");
        Assert.That(new ClipSearchOptions { Grid = 0, MaxShrink = 1 }.FindProblems(), Has.Count.EqualTo(2));
    }
}
