using AdaTSQ.Abstractions;
using AdaTSQ.Kernels;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

/// <summary>
/// A custom input quantizer on <see cref="QuantLinear"/> (<see cref="QuantLinear.SetInputQuantizer"/>): it replaces the spec's
/// uniform quantization of enabled activation specs only, sees the call's step, is refused by the integer kernels and is
/// dropped by <see cref="ModelSurgery.Restore"/>.
/// </summary>
public class QuantLinearInputQuantizerTests
{
    /// <summary>Rounds to multiples of <c>step</c> and records the specs and steps it was called with.</summary>
    private sealed class GridQuantizer(double step) : IActivationQuantizer
    {
        public List<(QuantSpec Spec, TimestepInfo? Step)> Calls { get; } = [];
        public string Description => $"grid of {step}";
        public Tensor QuantizeDequantize(Tensor input, QuantSpec spec, TimestepInfo? stepInfo)
        {
            Calls.Add((spec, stepInfo));
            using var scope = torch.NewDisposeScope();
            return (input / step).round_().mul_(step).MoveToOuterDisposeScope();
        }
    }

    private static (TorchSharp.Modules.Linear Linear, QuantLinear Quant) Make(LayerQuantConfig config)
    {
        torch.manual_seed(3);
        var linear = nn.Linear(32, 16);
        var quant = new QuantLinear("fc", linear);
        if (config.Weight.IsEnabled) quant.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, config.Weight));
        quant.DefaultConfig = config;
        return (linear, quant);
    }

    [Test]
    public void ReplacesTheUniformQuantizationOfEnabledActivationSpecs()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = new LayerQuantConfig(QuantSpec.Weight(8), QuantSpec.Activation(8));
        var (linear, quant) = Make(config);
        using var _ = quant;
        var x = TestTensors.Randn(4, 5, 32);
        var uniform = quant.call(x);
        var custom = new GridQuantizer(0.5);
        quant.SetInputQuantizer(custom);
        Assert.That(quant.InputQuantizer, Is.SameAs(custom));
        var step = new TimestepInfo(2, 5, 400);
        Tensor y;
        using (TimestepContext.Enter(step)) y = quant.call(x);
        var dq = FakeQuantizer.QuantizeDequantize(linear.weight, config.Weight);
        var expected = nn.functional.linear((x / 0.5).round() * 0.5, dq, linear.bias);
        Assert.That((y - expected).abs().max().item<float>(), Is.LessThan(1e-5f), "the layer computes Q_custom(x)·Q(W)ᵀ + b");
        Assert.That(TestTensors.RelativeError(y, uniform), Is.GreaterThan(1e-3), "differs from the 8-bit per-token grid");
        Assert.That(custom.Calls, Is.EqualTo(new[] { (config.Activation, (TimestepInfo?)step) }), "called once, with the spec and the step");

        // A weight-only call leaves the input unquantized: the quantizer is not asked.
        quant.DefaultConfig = LayerQuantConfig.Create(8);
        var weightOnly = quant.call(x);
        Assert.That((weightOnly - nn.functional.linear(x, dq, linear.bias)).abs().max().item<float>(), Is.LessThan(1e-5f));
        Assert.That(custom.Calls, Has.Count.EqualTo(1));

        quant.SetInputQuantizer(null);
        quant.DefaultConfig = config;
        Assert.That(TestTensors.Identical(quant.call(x), uniform), Is.True, "removing it gives the uniform quantization back");
    }

    [Test]
    public void TheIntegerKernelsRefuseALayerWithACustomInputQuantizer()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = new LayerQuantConfig(QuantSpec.Weight(8), QuantSpec.Activation(8));
        var (_, quant) = Make(config);
        using var layer = quant;
        var x = TestTensors.Randn(5, 3, 32);
        using var kernel = new IntegerLinearKernel(new KernelOptions { Isa = KernelIsa.Managed, Threads = 1 });
        layer.IntegerKernel = kernel;
        Assert.That(IntegerLinearKernel.WhyNotSupported(layer, config), Is.Null, "control: W8A8 per token runs on the kernels");
        layer.call(x).Dispose();
        Assert.That((kernel.IntegerCalls, kernel.FallbackCalls), Is.EqualTo((1L, 0L)));

        layer.SetInputQuantizer(new GridQuantizer(0.25));
        Assert.That(IntegerLinearKernel.WhyNotSupported(layer, config), Does.Contain("custom activation quantizer 'grid of 0.25'"));
        Assert.That(IntegerLinearKernel.WhyNotSupported(layer, LayerQuantConfig.Create(8)), Does.Not.Contain("custom"), "weight-only: the quantizer plays no part");
        var y = layer.call(x);
        Assert.That((kernel.IntegerCalls, kernel.FallbackCalls), Is.EqualTo((1L, 1L)), "the call fell back");
        layer.IntegerKernel = null;
        Assert.That(TestTensors.Identical(y, layer.call(x)), Is.True, "the fallback is the fake-quantized call with the custom quantizer");
        using var strict = new IntegerLinearKernel(new KernelOptions { Isa = KernelIsa.Managed, Threads = 1 }) { Strict = true };
        layer.IntegerKernel = strict;
        Assert.That(Assert.Throws<NotSupportedException>(() => layer.call(x))!.Message, Does.Contain("'fc'").And.Contain("custom activation quantizer"));
    }

    [Test]
    public void RestoreDropsTheQuantizerAndLeavesTheParametersBitIdentical()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(4);
        using var model = nn.Sequential(("fc1", nn.Linear(16, 32)), ("act", nn.GELU()), ("fc2", nn.Linear(32, 8)));
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        var x = TestTensors.Randn(6, 4, 16);
        var reference = model.call(x);
        ModelSurgery.ReplaceLinears(model);
        var fc2 = ModelSurgery.FindQuantLinears(model).Single(l => l.LayerName == "fc2");
        var config = new LayerQuantConfig(QuantSpec.Weight(4), QuantSpec.Activation(4));
        fc2.SetWeightVersion(QuantizedTensor.Quantize(fc2.Weight, config.Weight));
        fc2.DefaultConfig = config;
        fc2.SetInputQuantizer(new GridQuantizer(0.5));
        Assert.That(TestTensors.RelativeError(model.call(x), reference), Is.GreaterThan(1e-3));

        Assert.That(ModelSurgery.Restore(model), Is.EqualTo(2));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
        var after = model.state_dict();
        Assert.That(after.Keys, Is.EquivalentTo(before.Keys));
        foreach (var (name, value) in before)
            Assert.That(TestTensors.Identical(after[name], value), Is.True, name);
        Assert.That(TestTensors.Identical(model.call(x), reference), Is.True, "the model computes what it computed before");
        Assert.That(fc2.InputQuantizer, Is.Null, "the unwrapped layer no longer holds the quantizer");
    }
}
