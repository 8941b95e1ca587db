using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Tests.Quantization;

public class SmoothingAndStaticRangeTests
{
    /// <summary>Inputs whose channel 3 is 50× larger than the others: per-token activation quantization loses the rest.</summary>
    private static Tensor OutlierInputs(long seed)
    {
        var x = TestTensors.Randn(seed, 64, 32);
        using (torch.no_grad()) x[.., 3].mul_(50);
        return x;
    }

    [Test]
    public void SmoothQuantRescuesW8A4FromAnOutlierChannel()
    {
        double Error(bool smooth)
        {
            torch.manual_seed(1);
            using var model = nn.Sequential(("fc", nn.Linear(32, 16)));
            using var x = OutlierInputs(2);
            using var reference = ((nn.Module<Tensor, Tensor>)model).call(x).detach().clone();
            var builder = new QuantizationBuilder().ForModel(model).Weights(8).Activations(4).CalibrationData([x]);
            if (smooth) builder.SmoothActivations(0.5);
            var result = builder.Build().Apply();
            using var y = ((nn.Module<Tensor, Tensor>)model).call(x);
            double e = TestTensors.RelativeError(y, reference);
            var layer = ModelSurgery.FindQuantLinears(model).Single();
            Assert.That(layer.InputSmoothing is not null, Is.EqualTo(smooth));
            result.Restore();
            return e;
        }
        double plain = Error(false), smoothed = Error(true);
        Assert.That(smoothed, Is.LessThan(0.5 * plain), $"W8A4 output error: {plain:P1} without smoothing, {smoothed:P1} with");
    }

    [Test]
    public void SmoothingIsExactInFullPrecisionArithmetic()
    {
        torch.manual_seed(4);
        using var linear = nn.Linear(8, 3);
        using var layer = new QuantLinear("fc", linear);
        using var x = TestTensors.Randn(5, 4, 8);
        using var expected = layer.call(x).detach().clone();
        using var s = torch.linspace(0.5, 4, 8);
        layer.SetInputSmoothing(s);
        // A 16-bit weight and activation spec is full precision: the call must ignore the smoothing.
        using var same = layer.call(x);
        Assert.That(TestTensors.Identical(same, expected), Is.True);
        // The smoothed weight times the smoothed input is the original product.
        using var w = layer.SmoothedWeight();
        using var y = nn.functional.linear(x / s, w, layer.Bias);
        Assert.That(TestTensors.RelativeError(y, expected), Is.LessThan(1e-6));
        Assert.Throws<LayerQuantizationException>(() => layer.SetInputSmoothing(torch.zeros(8)));
        Assert.Throws<LayerQuantizationException>(() => layer.SetInputSmoothing(torch.ones(7)));
    }

    [Test]
    public void SmoothedStatisticsEqualStatisticsOfTheSmoothedInputs()
    {
        var steps = new TimestepInfo?[] { new TimestepInfo(0, 2, 999), new TimestepInfo(1, 2, 0) };
        var inputs = new[] { OutlierInputs(6), OutlierInputs(7) };
        using var s = torch.linspace(0.3, 3, 32);
        var raw = new LayerStatistics("fc", 32, collectSecondMoment: true, collectStepChannels: true);
        var direct = new LayerStatistics("fc", 32, collectSecondMoment: true, collectStepChannels: true);
        for (int i = 0; i < 2; i++)
        {
            raw.Add(inputs[i], steps[i], 1.0);
            using var scaled = inputs[i] / s;
            direct.Add(scaled, steps[i], 1.0);
        }
        using var smoothed = raw.Smoothed(s);
        Assert.That(smoothed.InputMin, Is.EqualTo(direct.InputMin).Within(1e-4 * Math.Abs(direct.InputMin)));
        Assert.That(smoothed.InputMax, Is.EqualTo(direct.InputMax).Within(1e-4 * Math.Abs(direct.InputMax)));
        Assert.That(smoothed.Steps[1].Max, Is.EqualTo(direct.Steps[1].Max).Within(1e-4 * Math.Abs(direct.Steps[1].Max)));
        Assert.That(TestTensors.RelativeError(smoothed.SecondMoment!, direct.SecondMoment!), Is.LessThan(1e-6));
        Assert.That(TestTensors.RelativeError(smoothed.ChannelAbsMax!, direct.ChannelAbsMax!), Is.LessThan(1e-6));
        // Without per-step channel extremes the smoothed statistics cannot know per-step ranges: they have none.
        using var lean = new LayerStatistics("fc", 32, collectSecondMoment: false);
        lean.Add(inputs[0], steps[0], 1.0);
        using var leanSmoothed = lean.Smoothed(s);
        Assert.That(leanSmoothed.Steps, Is.Empty);
        Assert.That(lean.Bytes, Is.LessThan(raw.Bytes));
        Assert.That(leanSmoothed.InputMax, Is.EqualTo(direct.Steps[0].Max).Within(1e-4 * Math.Abs(direct.Steps[0].Max)));
        raw.Dispose(); direct.Dispose();
        foreach (var t in inputs) t.Dispose();
    }

    [Test]
    public void StaticRangesPerTimestepGroupFollowTheStep()
    {
        torch.manual_seed(3);
        using var model = nn.Sequential(("fc", nn.Linear(4, 2)));
        // Step 0 sees inputs in ±8, step 1 in ±0.5: one shared range wastes most of the grid at step 1.
        using var big = TestTensors.Randn(1, 16, 4) * 4;
        using var small = TestTensors.Randn(2, 16, 4) * 0.25;
        var steps = new TimestepInfo?[] { new TimestepInfo(0, 2, 999), new TimestepInfo(1, 2, 0) };
        var spec = QuantSpec.Activation(4, dynamic: false);
        double ErrorAtStep1(int groups)
        {
            var result = new QuantizationBuilder().ForModel(model).Activations(spec)
                .CalibrationData(new ModuleCalibrationSource(model, [big, small], steps)).StaticRangesPerTimestepGroup(groups).Build().Apply();
            var layer = ModelSurgery.FindQuantLinears(model).Single();
            Assert.That(layer.StaticRangeGroups(spec), Has.Count.EqualTo(groups > 1 ? 2 : 0));
            using var context = TimestepContext.Enter(steps[1]!.Value);
            using var q = layer.QuantizeInput(small, spec);
            double e = TestTensors.RelativeError(q, small);
            result.Restore();
            return e;
        }
        double shared = ErrorAtStep1(1), grouped = ErrorAtStep1(2);
        Assert.That(grouped, Is.LessThan(shared / 4), $"step-1 input error: {shared:P1} with one range, {grouped:P1} with a range per step group");
    }
}
