using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Calibration;

public class UniformCalibratorTests
{
    private sealed class OneLayer : nn.Module<Tensor, Tensor>
    {
        private nn.Module<Tensor, Tensor> fc;

        public OneLayer() : base(nameof(OneLayer))
        {
            torch.manual_seed(9);
            fc = nn.Linear(6, 3);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => fc.call(x);
    }

    [Test]
    public void CollectsSecondMomentsRangesAndStepsExactly()
    {
        using var model = new OneLayer();
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        var inputs = new[] { TestTensors.Randn(1, 2, 4, 6), TestTensors.Randn(2, 5, 6) };
        var steps = new TimestepInfo?[] { new TimestepInfo(0, 2, 999), new TimestepInfo(1, 2, 0) };
        using var result = new UniformCalibrator().Calibrate([layer], new ModuleCalibrationSource(model, inputs, steps), CalibrationRequirements.SecondMoments);

        var stats = result.For("fc")!;
        using var all = torch.cat([inputs[0].reshape(-1, 6), inputs[1]]).to(ScalarType.Float64);
        using var expectedH = all.t().mm(all);
        Assert.That((stats.SecondMoment! - expectedH).abs().max().item<double>(), Is.LessThan(1e-9));
        Assert.That(stats.Rows, Is.EqualTo(13));
        Assert.That(stats.SecondMomentWeight, Is.EqualTo(13));
        using var absMax = all.abs().amax([0]).to(ScalarType.Float32);
        Assert.That(TestTensors.Identical(stats.ChannelAbsMax!, absMax), Is.True);
        Assert.That(stats.Steps.Keys, Is.EquivalentTo(new[] { 0, 1 }));
        Assert.That(stats.Steps[1].Rows, Is.EqualTo(5));
        Assert.That(stats.Steps[0].Max, Is.EqualTo(TestTensors.Data(inputs[0]).Max()).Within(1e-6));
        Assert.That(layer.Observer, Is.Null, "the observer is detached afterwards");
        foreach (var t in inputs) t.Dispose();
    }

    [Test]
    public void NonFiniteInputsNameTheLayerAndTheStep()
    {
        using var model = new OneLayer();
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        using var bad = torch.full(2, 6, float.PositiveInfinity);
        var error = Assert.Throws<CalibrationException>(() =>
            new UniformCalibrator().Calibrate([layer], new ModuleCalibrationSource(model, [bad], [new TimestepInfo(4, 10, 600)]), CalibrationRequirements.None))!;
        Assert.That(error.Message, Does.Contain("'fc'").And.Contain("step 5/10").And.Contain("infinite"));
        Assert.That(layer.Observer, Is.Null);
    }

    [Test]
    public void EmptySourceIsRefused()
    {
        using var model = new OneLayer();
        ModelSurgery.ReplaceLinears(model);
        var error = Assert.Throws<CalibrationException>(() =>
            new UniformCalibrator().Calibrate(ModelSurgery.FindQuantLinears(model), new ModuleCalibrationSource(model, []), CalibrationRequirements.None))!;
        Assert.That(error.Message, Does.Contain("empty"));
    }
}
