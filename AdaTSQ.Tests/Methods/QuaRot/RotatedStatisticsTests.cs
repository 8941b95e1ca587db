using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.QuaRot;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.QuaRot;

/// <summary><see cref="LayerStatistics.Rotated"/>: the Hessian of rotated inputs exactly, the extremes as bounds that hold.</summary>
public class RotatedStatisticsTests
{
    private static Tensor OutlierInputs(long seed, long features)
    {
        var x = TestTensors.Randn(seed, 64, features);
        using (torch.no_grad())
        {
            x[.., 3].mul_(50);
            x[.., 17].add_(20);
        }
        return x;
    }

    [TestCase(HadamardConstruction.Kronecker)]
    [TestCase(HadamardConstruction.BlockDiagonal)]
    public void RotatedStatisticsMatchOrBoundThoseOfTheRotatedInputs(HadamardConstruction construction)
    {
        using var scope = torch.NewDisposeScope();
        const long k = 192;
        using var rotation = HadamardRotation.Create(k, construction, 64, seed: 5);
        var steps = new TimestepInfo?[] { new TimestepInfo(0, 2, 999), new TimestepInfo(1, 2, 0) };
        var inputs = new[] { OutlierInputs(1, k), OutlierInputs(2, k) };
        using var raw = new LayerStatistics("fc", k, collectSecondMoment: true, collectStepChannels: true);
        using var direct = new LayerStatistics("fc", k, collectSecondMoment: true, collectStepChannels: true);
        for (int i = 0; i < 2; i++)
        {
            raw.Add(inputs[i], steps[i], weight: 0.5 + i);
            direct.Add(rotation.Rotate(inputs[i]), steps[i], weight: 0.5 + i);
        }
        using var rotated = raw.Rotated(rotation);

        // Exact: the second moment R·H·Rᵀ, and the counts.
        Assert.That(TestTensors.RelativeError(rotated.SecondMoment!, direct.SecondMoment!), Is.LessThan(1e-6), "float32 rotated inputs vs float64 R·H·Rᵀ");
        Assert.That(rotated.SecondMomentWeight, Is.EqualTo(direct.SecondMomentWeight));
        Assert.That(rotated.Rows, Is.EqualTo(direct.Rows));
        Assert.That(rotated.ExtremesAreBounds, Is.True);
        Assert.That(raw.ExtremesAreBounds, Is.False);

        // Bounds: every observed rotated extreme lies inside them.
        const double slack = 1e-4;
        Assert.That((direct.ChannelMax! <= rotated.ChannelMax! + slack).all().item<bool>(), Is.True);
        Assert.That((direct.ChannelMin! >= rotated.ChannelMin! - slack).all().item<bool>(), Is.True);
        Assert.That((direct.ChannelAbsMax! <= rotated.ChannelAbsMax! + slack).all().item<bool>(), Is.True);
        Assert.That(rotated.InputMax, Is.GreaterThanOrEqualTo(direct.InputMax - slack));
        Assert.That(rotated.InputMin, Is.LessThanOrEqualTo(direct.InputMin + slack));
        Assert.That(rotated.Steps.Keys, Is.EquivalentTo(direct.Steps.Keys));
        foreach (var (step, range) in direct.Steps)
        {
            Assert.That(rotated.Steps[step].Max, Is.GreaterThanOrEqualTo(range.Max - slack));
            Assert.That(rotated.Steps[step].Min, Is.LessThanOrEqualTo(range.Min + slack));
            Assert.That(rotated.Steps[step].Rows, Is.EqualTo(range.Rows));
        }
        TestContext.Out.WriteLine($"{rotation.Description}: observed rotated range [{direct.InputMin:F1}, {direct.InputMax:F1}], bound [{rotated.InputMin:F1}, {rotated.InputMax:F1}] (unrotated [{raw.InputMin:F1}, {raw.InputMax:F1}])");
        foreach (var t in inputs) t.Dispose();
    }

    [Test]
    public void WithoutPerStepChannelExtremesTheRotatedStatisticsHaveNoPerStepRanges()
    {
        using var scope = torch.NewDisposeScope();
        using var rotation = HadamardRotation.Create(64);
        using var raw = new LayerStatistics("fc", 64, collectSecondMoment: false);
        raw.Add(TestTensors.Randn(3, 8, 64), new TimestepInfo(0, 1, 999), 1);
        using var rotated = raw.Rotated(rotation);
        Assert.That(rotated.Steps, Is.Empty);
        Assert.That(rotated.SecondMoment, Is.Null);
        Assert.That(rotated.HasData, Is.True);
        using var wrong = HadamardRotation.Create(32);
        Assert.Throws<CalibrationException>(() => raw.Rotated(wrong));
    }
}
