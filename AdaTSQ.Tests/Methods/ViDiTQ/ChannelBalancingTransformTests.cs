using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.SmoothQuant;
using AdaTSQ.Methods.ViDiTQ;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.ViDiTQ;

/// <summary>ViDiT-Q's static–dynamic channel balancing on one layer: exact in float arithmetic at every step, factors per step group.</summary>
public class ChannelBalancingTransformTests
{
    private const int Steps = 8;
    private const long Features = 192;

    // Inputs at step s: channel 3 is an outlier (×40) in the first half of the steps, channel 50 in the second half.
    private static Tensor InputsAt(int step, bool varying = true)
    {
        var x = TestTensors.Randn(varying ? 100 + step : 100, 64, Features);
        using (torch.no_grad())
            x[.., !varying || step < Steps / 2 ? 3 : 50].mul_(40);
        return x;
    }

    private static LayerStatistics StepStatistics(bool varying = true)
    {
        var stats = new LayerStatistics("fc", Features, collectSecondMoment: false, collectStepChannels: true);
        for (int s = 0; s < Steps; s++)
            using (var x = InputsAt(s, varying))
                stats.Add(x, new TimestepInfo(s, Steps, Steps - 1 - s), 1.0);
        return stats;
    }

    private static QuantLinear Layer()
    {
        torch.manual_seed(11);
        return new QuantLinear("fc", nn.Linear(Features, 24));
    }

    [Test]
    public void BalancingAndRotationLeaveTheFloatOutputUnchangedAtEveryStep()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer();
        using var stats = StepStatistics();
        using var transformed = new ChannelBalancingTransform().Apply(layer, [LayerQuantConfig.Create(8, 8)], stats);
        Assert.That(transformed, Is.Not.Null);
        Assert.That(layer.InputRotation, Is.Not.Null);
        Assert.That(layer.InputSmoothingGroups, Is.EqualTo(new[] { (0, 3), (4, 7) }));
        var x = InputsAt(0);
        var expected = nn.functional.linear(x, layer.Weight, layer.Bias);
        Assert.That(TestTensors.Identical(layer.call(x), expected), Is.True, "a full-precision call ignores the balancing");
        var transformedInputs = new List<Tensor>();
        for (int s = 0; s < Steps; s++)
        {
            using var step = TimestepContext.Enter(new TimestepInfo(s, Steps, Steps - 1 - s));
            var (first, last) = layer.InputSmoothingGroups.Single(g => g.FirstStep <= s && s <= g.LastStep);
            var t = layer.TransformedInput(x);           // (x / s_g)·Rᵀ, what a quantized call at this step quantizes
            var y = nn.functional.linear(t, layer.StepSmoothedWeight(first, last), layer.Bias);
            Assert.That(TestTensors.RelativeError(y, expected), Is.LessThan(1e-5), $"step {s}");
            transformedInputs.Add(t);
        }
        Assert.That(TestTensors.RelativeError(transformedInputs[0], transformedInputs[^1]), Is.GreaterThan(0.01), "the two groups transform the input differently");
        // Outside any step: the factors of all steps.
        var outside = nn.functional.linear(layer.TransformedInput(x), layer.SmoothedWeight(), layer.Bias);
        Assert.That(TestTensors.RelativeError(outside, expected), Is.LessThan(1e-5));
    }

    [Test]
    public void FactorsDifferPerStepGroupWhereTheChannelRangesDiffer()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer();
        using var stats = StepStatistics();
        using var _ = new ChannelBalancingTransform(new ViDiTQOptions { Rotation = null }).Apply(layer, [LayerQuantConfig.Create(8, 8)], stats);
        var early = layer.InputSmoothingAt(0)!;
        var late = layer.InputSmoothingAt(Steps - 1)!;
        Assert.That(early[3].item<float>(), Is.GreaterThan(3 * late[3].item<float>()), "channel 3 peaks early");
        Assert.That(late[50].item<float>(), Is.GreaterThan(3 * early[50].item<float>()), "channel 50 peaks late");
        using var others = torch.ones(Features, dtype: ScalarType.Bool);
        others[3] = false;
        others[50] = false;
        var ratio = (early / late)[others];
        Assert.That(ratio.min().item<float>(), Is.GreaterThan(0.7f));
        Assert.That(ratio.max().item<float>(), Is.LessThan(1.4f));
        // The layer's own factors are SmoothQuant's over all steps.
        var all = SmoothQuantTransform.Factors(layer.Weight, stats.ChannelAbsMax!, 0.5);
        Assert.That(TestTensors.RelativeError(layer.InputSmoothing!, all), Is.LessThan(1e-6));
    }

    [Test]
    public void FactorsAreEqualAcrossGroupsWhenTheRangesDoNotChange()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer();
        using var stats = StepStatistics(varying: false);
        using var _ = new ChannelBalancingTransform(new ViDiTQOptions { Rotation = null, TimestepGroups = 4 }).Apply(layer, [LayerQuantConfig.Create(8, 8)], stats);
        Assert.That(layer.InputSmoothingGroups, Has.Count.EqualTo(4));
        for (int s = 1; s < Steps; s++)
            Assert.That(TestTensors.Identical(layer.InputSmoothingAt(s)!, layer.InputSmoothingAt(0)!), Is.True, $"step {s}");
    }

    [Test]
    public void QuantizedCallsUseTheirStepGroupsWeightVersion()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer();
        using var stats = StepStatistics();
        using var _ = new ChannelBalancingTransform().Apply(layer, [LayerQuantConfig.Create(8, 8)], stats);
        var spec = QuantSpec.Weight(8);
        layer.SetWeightVersion(QuantizedTensor.Quantize(layer.SmoothedWeight(), spec));
        foreach (var (first, last) in layer.InputSmoothingGroups)
            layer.SetStepWeightVersion(QuantizedTensor.Quantize(layer.StepSmoothedWeight(first, last), spec), first, last);
        layer.DefaultConfig = LayerQuantConfig.Create(8, 8);
        Assert.That(layer.QuantizedWeightBytes, Is.EqualTo(3 * layer.GetWeightVersion(spec).StorageBytes), "the layer's own version and one per group");
        for (int s = 0; s < Steps; s++)
        {
            var x = InputsAt(s);
            var expected = nn.functional.linear(x, layer.Weight, layer.Bias);
            using var step = TimestepContext.Enter(new TimestepInfo(s, Steps, Steps - 1 - s));
            Assert.That(TestTensors.RelativeError(layer.call(x), expected), Is.LessThan(0.03), $"W8A8 at step {s}");
        }
        // Removing a spec removes the groups' versions too; a call at a group's step then names what is missing.
        layer.RemoveWeightVersion(spec);
        Assert.That(layer.QuantizedWeightBytes, Is.Zero);
        using (TimestepContext.Enter(new TimestepInfo(0, Steps, Steps - 1)))
            Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.call(InputsAt(0)))!.Message, Does.Contain("step group 0…3"));
    }

    [Test]
    public void StepGroupsAreSetBeforeRotationAndVersionsAndMayNotOverlap()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer();
        layer.SetStepInputSmoothing(torch.ones(Features), 0, 3);
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetStepInputSmoothing(torch.ones(Features), 2, 5))!.Message, Does.Contain("overlaps"));
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetStepInputSmoothing(torch.ones(10), 4, 5))!.Message, Does.Contain($"expected [{Features}]"));
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetStepInputSmoothing(-torch.ones(Features), 4, 5))!.Message, Does.Contain("positive"));
        Assert.Throws<LayerQuantizationException>(() => layer.StepSmoothedWeight(4, 7));
        layer.SetStepWeightVersion(QuantizedTensor.Quantize(layer.StepSmoothedWeight(0, 3), QuantSpec.Weight(8)), 0, 3);
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetStepInputSmoothing(torch.ones(Features), 4, 7))!.Message, Does.Contain("before any weight version"));
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.SetInputRotation(null))!.Message, Does.Contain("before any weight version"));
    }

    [Test]
    public void StaticActivationsWithStepGroupsAreRefusedAndOneGroupIsSmoothQuant()
    {
        using var scope = torch.NewDisposeScope();
        using var stats = StepStatistics();
        using (var layer = Layer())
        {
            var staticConfig = new LayerQuantConfig(QuantSpec.Weight(8), QuantSpec.Activation(8, dynamic: false));
            Assert.That(Assert.Throws<NotSupportedException>(() => new ChannelBalancingTransform().Apply(layer, [staticConfig], stats))!.Message, Does.Contain("'fc'").And.Contain("dynamic"));
        }
        using (var layer = Layer())
        {
            using var _ = new ChannelBalancingTransform(new ViDiTQOptions { TimestepGroups = 1, Rotation = null }).Apply(layer, [LayerQuantConfig.Create(8, 8)], stats);
            Assert.That(layer.InputSmoothingGroups, Is.Empty);
            Assert.That(layer.InputRotation, Is.Null);
        }
        using (var layer = Layer())
            Assert.That(new ChannelBalancingTransform().Apply(layer, [LayerQuantConfig.Create(8)], stats), Is.Null, "weight-only layers are not balanced");
        Assert.That(new ViDiTQOptions { Alpha = 2, TimestepGroups = 0 }.FindProblems(), Has.Count.EqualTo(2));
    }
}
