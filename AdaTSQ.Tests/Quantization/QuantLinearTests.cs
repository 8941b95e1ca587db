using AdaTSQ.Abstractions;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

public class QuantLinearTests
{
    private static (TorchSharp.Modules.Linear Linear, QuantLinear Quant) Make(long seed = 1)
    {
        torch.manual_seed(seed);
        var linear = nn.Linear(32, 16);
        return (linear, new QuantLinear("fc", linear));
    }

    /// <summary>A policy that uses W4A16 at even steps and W8A8 at odd ones.</summary>
    private sealed class AlternatingPolicy : ITimestepPolicy
    {
        public static readonly LayerQuantConfig Even = LayerQuantConfig.Create(4);
        public static readonly LayerQuantConfig Odd = LayerQuantConfig.Create(8, 8);
        public string Name => "alternating";
        public LayerQuantConfig Resolve(string layerName, TimestepInfo? step) => step is { StepIndex: var i } && i % 2 == 1 ? Odd : Even;
        public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) => [Even, Odd];
    }

    [Test]
    public void FullPrecisionComputesExactlyWhatTheLinearDid()
    {
        var (linear, quant) = Make();
        using var x = TestTensors.Randn(2, 3, 5, 32);
        using var expected = linear.call(x);
        using var actual = quant.call(x);
        Assert.That(TestTensors.Identical(actual, expected), Is.True);
        Assert.That(quant.state_dict().Keys, Is.EquivalentTo(new[] { "weight", "bias" }));
    }

    [Test]
    public void UsesTheWeightVersionOfItsConfig()
    {
        var (linear, quant) = Make();
        quant.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, QuantSpec.Weight(4)));
        quant.DefaultConfig = LayerQuantConfig.Create(4);
        using var x = TestTensors.Randn(3, 4, 32);
        using var dq = FakeQuantizer.QuantizeDequantize(linear.weight, QuantSpec.Weight(4));
        using var expected = nn.functional.linear(x, dq, linear.bias);
        using var actual = quant.call(x);
        Assert.That((actual - expected).abs().max().item<float>(), Is.LessThan(1e-6f));
        using var fp = linear.call(x);
        Assert.That(TestTensors.RelativeError(actual, fp), Is.GreaterThan(1e-3), "W4 differs from full precision");
    }

    [Test]
    public void HoldsSeveralVersionsAndSwitchesPerTimestep()
    {
        var (linear, quant) = Make();
        foreach (var bits in new[] { 4, 8 }) quant.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, QuantSpec.Weight(bits)));
        quant.Policy = new AlternatingPolicy();
        using var x = TestTensors.Randn(4, 4, 32);
        using var w4 = FakeQuantizer.QuantizeDequantize(linear.weight, QuantSpec.Weight(4));
        using var w8 = FakeQuantizer.QuantizeDequantize(linear.weight, QuantSpec.Weight(8));
        using var x8 = FakeQuantizer.QuantizeDequantize(x, QuantSpec.Activation(8));
        using var expectEven = nn.functional.linear(x, w4, linear.bias);
        using var expectOdd = nn.functional.linear(x8, w8, linear.bias);

        Tensor At(int step) { using var _ = TimestepContext.Enter(new TimestepInfo(step, 4, 1000 - 250 * step)); return quant.call(x); }
        using var even = At(2);
        using var odd = At(3);
        Assert.That((even - expectEven).abs().max().item<float>(), Is.LessThan(1e-6f));
        Assert.That((odd - expectOdd).abs().max().item<float>(), Is.LessThan(1e-6f));
        Assert.That(quant.WeightVersions, Has.Count.EqualTo(2));
        Assert.That(quant.QuantizedWeightBytes, Is.EqualTo(16 * 32 / 2 + 16 * 32 + 2 * 16 * 4), "W4 packed + W8 codes + two sets of scales");
    }

    [Test]
    public void MissingWeightVersionNamesTheLayerAndWhatItHolds()
    {
        var (linear, quant) = Make();
        quant.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, QuantSpec.Weight(8)));
        quant.DefaultConfig = LayerQuantConfig.Create(4);
        using var x = TestTensors.Randn(4, 2, 32);
        var error = Assert.Throws<LayerQuantizationException>(() => quant.call(x).Dispose())!;
        Assert.That(error.Message, Does.Contain("'fc'").And.Contain("int4").And.Contain("int8"));
    }

    [Test]
    public void WrongInputWidthNamesTheLayerAndShape()
    {
        var (_, quant) = Make();
        using var x = TestTensors.Randn(4, 2, 31);
        var error = Assert.Throws<LayerQuantizationException>(() => quant.call(x).Dispose())!;
        Assert.That(error.Message, Does.Contain("'fc'").And.Contain("[2, 31]").And.Contain("32"));
    }

    [Test]
    public void StaticActivationsNeedACalibratedRange()
    {
        var (linear, quant) = Make();
        var staticA8 = QuantSpec.Activation(8, dynamic: false);
        quant.DefaultConfig = new LayerQuantConfig(QuantSpec.FullPrecision, staticA8);
        using var x = TestTensors.Randn(5, 3, 32);
        Assert.Throws<LayerQuantizationException>(() => quant.call(x).Dispose());

        float absMax = TestTensors.Data(x).Max(Math.Abs);
        quant.SetStaticInputRange(staticA8, -absMax, absMax);
        using var y = quant.call(x);
        using var expected = linear.call(FakeQuantizer.QuantizeDequantize(x, new QuantSpec { Bits = 8, Granularity = QuantGranularity.PerTensor }));
        Assert.That((y - expected).abs().max().item<float>(), Is.LessThan(1e-5f));
    }

    [Test]
    public void MovingToAnotherDtypeMovesEveryVersion()
    {
        var (linear, quant) = Make();
        quant.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, QuantSpec.Weight(8)));
        quant.DefaultConfig = LayerQuantConfig.Create(8);
        quant.to(ScalarType.Float64);
        using var x = TestTensors.Randn(6, 2, 32).to(ScalarType.Float64);
        using var y = quant.call(x);
        Assert.That(y.dtype, Is.EqualTo(ScalarType.Float64));
        Assert.That(quant.Weight.dtype, Is.EqualTo(ScalarType.Float64));
    }

    [Test]
    public void StaticPolicyUsesOverridesByLayerName()
    {
        var policy = new StaticTimestepPolicy(LayerQuantConfig.Create(4), new Dictionary<string, LayerQuantConfig> { ["head"] = LayerQuantConfig.Create(8) });
        Assert.That(policy.Resolve("blocks.0.fc1", null).ToString(), Is.EqualTo("W4A16"));
        Assert.That(policy.Resolve("head", new TimestepInfo(3, 10, 700)).ToString(), Is.EqualTo("W8A16"));
        Assert.That(policy.ConfigsFor("head"), Has.Count.EqualTo(1));
    }
}
