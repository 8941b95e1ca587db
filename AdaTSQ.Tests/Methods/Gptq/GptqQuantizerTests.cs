using AdaTSQ.Methods.Gptq;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Models;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Tests.Methods.Gptq;

public class GptqQuantizerTests
{

    private static double OutputError(Tensor w, Tensor q, Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return ((w - q).mm(x.t())).norm().item<float>() / w.mm(x.t()).norm().item<float>();
    }

    [TestCase(4, 0, false)]
    [TestCase(3, 16, true)]
    public void WithAnIdentityHessianGptqIsRoundToNearest(int bits, int group, bool symmetric)
    {
        using var w = TestTensors.Randn(1, 24, 64);
        using var h = torch.eye(64, dtype: ScalarType.Float64);
        var spec = QuantSpec.Weight(bits, group, symmetric);
        using var g = new GptqQuantizer().Quantize("fc", w, spec, h);
        using var r = QuantizedTensor.Quantize(w, spec);
        using var gd = g.Dequantize();
        using var rd = r.Dequantize();
        Assert.That((gd - rd).abs().max().item<float>(), Is.LessThan(1e-5f));
        Assert.That(g.Parameters.Scale.shape, Is.EqualTo(r.Parameters.Scale.shape));
        Assert.That(TestTensors.Identical(g.UnpackedCodes(), r.UnpackedCodes()), Is.True);
    }

    [TestCase(4, 0, false, false)]
    [TestCase(3, 0, true, false)]
    [TestCase(4, 16, false, false)]
    [TestCase(3, 16, false, true)]
    public void BeatsRoundToNearestOnCorrelatedInputs(int bits, int group, bool symmetric, bool actOrder)
    {
        using var scope = torch.NewDisposeScope();
        var w = TestTensors.Randn(2, 48, 64);
        var x = TestTensors.CorrelatedInputs(512, 64, 3);
        var h = x.t().mm(x).to(ScalarType.Float64);
        var spec = QuantSpec.Weight(bits, group, symmetric);
        using var g = new GptqQuantizer(new GptqOptions { ActOrder = actOrder, BlockSize = 16 }).Quantize("fc", w, spec, h);
        using var r = QuantizedTensor.Quantize(w, spec);
        double gptq = OutputError(w, g.Dequantize(), x), rtn = OutputError(w, r.Dequantize(), x);
        Assert.That(gptq, Is.LessThan(0.8 * rtn), $"GPTQ {gptq:P2} vs RTN {rtn:P2}");
        Assert.That(g.UnpackedCodes().min().item<short>(), Is.GreaterThanOrEqualTo((short)spec.QMin));
    }

    [Test]
    public void SmallerGroupsAndActOrderLowerTheErrorWhereTheyShould()
    {
        // Inputs whose channel scales span two orders of magnitude: act-order quantizes the channels
        // that matter most first, while the most freedom is left to absorb their error.
        using var basis = TestTensors.CorrelatedInputs(1024, 64, 41);
        using var scales = torch.logspace(-1, 1, 64);
        using var perm = torch.randperm(64, generator: new Generator(5));
        using var x = basis * scales.index_select(0, perm);
        using var w = TestTensors.Randn(42, 32, 64);
        using var xd = x.to(ScalarType.Float64);
        using var h = xd.t().mm(xd);
        double Error(int group, bool actOrder)
        {
            using var q = new GptqQuantizer(new GptqOptions { ActOrder = actOrder }).Quantize("fc", w, QuantSpec.Weight(3, group), h);
            using var d = q.Dequantize();
            return OutputError(w, d, x);
        }
        double channel = Error(0, false), grouped = Error(16, false), ordered = Error(0, true);
        Assert.That(grouped, Is.LessThan(channel), $"3-bit per-channel {channel:P2}, groups of 16 {grouped:P2}");
        Assert.That(ordered, Is.LessThan(channel), $"3-bit per-channel {channel:P2}, with act-order {ordered:P2}");
        Assert.That(Error(16, true), Is.Not.EqualTo(grouped), "act-order changes the grouped result (static groups)");
    }

    [Test]
    public void DeadInputsGetZeroWeightAndIllConditionedHessiansAreDamped()
    {
        using var w = TestTensors.Randn(4, 8, 16);
        using var x = TestTensors.CorrelatedInputs(64, 16, 5);
        x.index_fill_(1, torch.tensor(new long[] { 3 }), 0f);
        using var h = x.t().mm(x).to(ScalarType.Float64);
        using var q = new GptqQuantizer().Quantize("fc", w, QuantSpec.Weight(4), h);
        using var dq = q.Dequantize();
        Assert.That(dq[.., 3].abs().max().item<float>(), Is.Zero);
        Assert.That(dq.isfinite().all().item<bool>(), Is.True);

        using var indefinite = torch.diag(torch.tensor(new double[] { 1, 1, 1, -50, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }));
        Assert.Throws<LayerQuantizationException>(() => new GptqQuantizer(new GptqOptions { MaxDampingRetries = 0 }).Quantize("fc", w, QuantSpec.Weight(4), indefinite).Dispose());
        using var rescued = new GptqQuantizer(new GptqOptions { MaxDampingRetries = 6 }).Quantize("fc", w, QuantSpec.Weight(4), indefinite);
        Assert.That(rescued.Dequantize().isfinite().all().item<bool>(), Is.True);
    }

    [Test]
    public void ThroughTheBuilderItNeedsCalibrationDataAndBeatsRtn()
    {
        Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(new TinyTransformer(seed: 1)).Weights(3).Quantizer(new GptqQuantizer()).Build());
        using var model = new TinyTransformer(width: 64, depth: 2, seed: 7);
        model.eval();
        var calibration = Enumerable.Range(0, 4).Select(i => TestTensors.Randn(50 + i, 4, 16, 64)).ToList();
        double Run(global::AdaTSQ.Abstractions.IQuantizer quantizer)
        {
            var result = new QuantizationBuilder().ForModel(model).Weights(3).Quantizer(quantizer).CalibrationData(calibration).Build().Apply();
            double mean = result.Layers.Average(l => l.OutputRelativeError!.Value);
            result.Restore();
            return mean;
        }
        double rtn = Run(new RtnQuantizer()), gptq = Run(new GptqQuantizer());
        Assert.That(gptq, Is.LessThan(rtn), $"mean layer output error: GPTQ {gptq:P2} vs RTN {rtn:P2}");
        foreach (var t in calibration) t.Dispose();
    }
}
