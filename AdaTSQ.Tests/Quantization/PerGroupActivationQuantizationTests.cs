using AdaTSQ.Kernels;
using AdaTSQ.Quantization;
using AdaTSQ.Tests.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

/// <summary>
/// Per-token × per-group activation specs: the factory, labels and validation, fake quantization of a
/// <see cref="QuantLinear"/> input, and the layer on the integer kernels against its fake-quantized self.
/// </summary>
public class PerGroupActivationQuantizationTests
{
    [Test]
    public void TheFactoryMakesADynamicPerGroupSpec()
    {
        var spec = QuantSpec.Activation(4, 64);
        Assert.That((spec.Bits, spec.Granularity, spec.GroupSize, spec.Dynamic, spec.Symmetric, spec.ClipRatio),
            Is.EqualTo((4, QuantGranularity.PerGroup, 64, true, true, 1.0)));
        Assert.That(spec.ToString(), Is.EqualTo("int4 g64 sym"));
        Assert.That(QuantSpec.Activation(8, 0), Is.EqualTo(QuantSpec.Activation(8)), "group 0: the per-token spec");
        Assert.That(QuantSpec.Activation(16, 64), Is.EqualTo(QuantSpec.FullPrecision));
        Assert.That(QuantSpec.Activation(4, 32, clipRatio: 0.9).ToString(), Is.EqualTo("int4 g32 sym clip0.9"));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantSpec.Activation(4, -64));
        Assert.That(spec.FindProblems(QuantTarget.Activation, 256), Is.Empty);
        Assert.That(spec.FindProblems(QuantTarget.Activation, 100), Has.Some.Contains("group size 64 does not divide the input dimension 100"));
        Assert.That((spec with { Dynamic = false }).FindProblems(QuantTarget.Activation), Has.Some.Contains("static (calibrated) activation ranges need PerTensor"));
    }

    [Test]
    public void TheBitWidthSearchKeepsTheActivationGroups()
    {
        var options = new AdaTSQ.Methods.AdaTSQ.Search.BitWidthSearchOptions { ActivationSpec = QuantSpec.Activation(8, 64), PairActivationBits = true };
        Assert.That(options.ConfigFor(4).Activation, Is.EqualTo(QuantSpec.Activation(4, 64)), "paired W=A: the bits change, the groups stay");
        Assert.That(options.ConfigFor(QuantSpec.FullPrecisionBits).Activation, Is.EqualTo(QuantSpec.FullPrecision));
    }

    [Test]
    public void FakeQuantizationOfAnInputIsPerRowAndPerGroup()
    {
        using var scope = torch.NewDisposeScope();
        var linear = nn.Linear(128, 16);
        using var layer = new QuantLinear("fc", linear);
        var x = torch.randn(2, 5, 128, generator: new Generator(3));
        x[0, 1].narrow(0, 64, 64).mul_(100f);  // one loud group: the other groups keep their resolution
        var spec = QuantSpec.Activation(4, 64);
        var q = layer.QuantizeInput(x, spec);
        var expected = FakeQuantizer.QuantizeDequantize(x, spec);
        Assert.That(TestTensors.Identical(q, expected), Is.True);
        var quiet = (q[0, 1].narrow(0, 0, 64) - x[0, 1].narrow(0, 0, 64)).abs().max().item<float>();
        var perToken = (layer.QuantizeInput(x, QuantSpec.Activation(4))[0, 1].narrow(0, 0, 64) - x[0, 1].narrow(0, 0, 64)).abs().max().item<float>();
        Assert.That(quiet, Is.LessThan(perToken / 10), "the quiet group keeps its own scale");
    }

    [Test]
    public void BadGroupsAndStaticPerGroupRangesAreRefusedNamingTheLayer()
    {
        using var scope = torch.NewDisposeScope();
        var linear = nn.Linear(96, 8);
        using var layer = new QuantLinear("blocks.0.fc", linear);
        var x = torch.randn(3, 96);
        var e = Assert.Throws<QuantSpecException>(() => layer.QuantizeInput(x, QuantSpec.Activation(4, 64)));
        Assert.That(e!.Message, Does.Contain("blocks.0.fc").And.Contain("group size 64 does not divide the input dimension 96"));
        var staticSpec = QuantSpec.Activation(4, 32) with { Dynamic = false };
        Assert.That(Assert.Throws<LayerQuantizationException>(() => layer.QuantizeInput(x, staticSpec))!.Message, Does.Contain("per-group activation scales must be dynamic"));
        Assert.Throws<QuantSpecException>(() => layer.SetStaticInputRange(staticSpec, -1, 1));
    }

    /// <summary>Weight spec, activation spec: the cases of the issue (W8A8 / W4A4 / W3A3 g64, g32 / g128, per-channel and grouped weights).</summary>
    private static readonly (string Name, QuantSpec Weight, QuantSpec Activation)[] Cases =
    [
        ("W8A8 g64", QuantSpec.Weight(8, 64), QuantSpec.Activation(8, 64)),
        ("W4A4 g64", QuantSpec.Weight(4, 64), QuantSpec.Activation(4, 64)),
        ("W3A3 g64", QuantSpec.Weight(3, 64), QuantSpec.Activation(3, 64)),
        ("W4A4 g32", QuantSpec.Weight(4, 32), QuantSpec.Activation(4, 32)),
        ("W4A4 g128", QuantSpec.Weight(4, 128), QuantSpec.Activation(4, 128)),
        ("W4 per-channel, A4 g64", QuantSpec.Weight(4), QuantSpec.Activation(4, 64)),
        ("W8 per-channel, A8 g64", QuantSpec.Weight(8), QuantSpec.Activation(8, 64)),
        ("W4 g32, A4 g64", QuantSpec.Weight(4, 32), QuantSpec.Activation(4, 64)),
        ("W4 g128, A4 g64", QuantSpec.Weight(4, 128), QuantSpec.Activation(4, 64)),
        ("W4 g64, A8 g64", QuantSpec.Weight(4, 64), QuantSpec.Activation(8, 64)),
        ("W8 per-tensor, A4 g32", QuantSpec.Weight(8) with { Granularity = QuantGranularity.PerTensor }, QuantSpec.Activation(4, 32)),
    ];

    private static IEnumerable<TestCaseData> LayerCases() =>
        from isa in new[] { "avx512vnni", "avx2", "scalar", "managed" }
        from c in Cases
        select new TestCaseData(isa, c.Name).SetName($"QuantLinearOnTheKernelsEqualsItsFakeQuantizedSelf({isa}, {c.Name})");

    [TestCaseSource(nameof(LayerCases))]
    public void QuantLinearOnTheKernelsEqualsItsFakeQuantizedSelf(string isa, string name)
    {
        var kernelIsa = NativeKernels.ParseIsa(isa);
        NativeTestSupport.RequireIsa(kernelIsa);
        var (_, weightSpec, activationSpec) = Cases.Single(c => c.Name == name);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var linear = nn.Linear(384, 100);
        using var layer = new QuantLinear("fc", linear);
        layer.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, weightSpec));
        var config = new LayerQuantConfig(weightSpec, activationSpec);
        layer.DefaultConfig = config;
        Assert.That(IntegerLinearKernel.WhyNotSupported(config, 384), Is.Null);
        var x = torch.randn(3, 29, 384, generator: new Generator(5)) * 2;
        x[1, 4].narrow(0, 128, 32).mul_(50f);  // outlier channels in one group
        var simulated = layer.call(x);
        using var kernel = new IntegerLinearKernel(new KernelOptions { Isa = kernelIsa, Threads = 2 }) { Strict = true };
        layer.IntegerKernel = kernel;
        var integer = layer.call(x);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(1));
        double rel = (integer - simulated).abs().max().item<float>() / Math.Max(1e-6, simulated.abs().max().item<float>());
        Assert.That(rel, Is.LessThan(1e-5), $"{name} on {isa}: integer vs fake-quant output");
        // Per-token on the same weights packs (and caches) a second version, at the weights' own group.
        long bytes = kernel.PackedWeightBytes;
        layer.DefaultConfig = config with { Activation = QuantSpec.Activation(activationSpec.Bits) };
        layer.IntegerKernel = null;
        var perTokenSimulated = layer.call(x);
        layer.IntegerKernel = kernel;
        var perToken = layer.call(x);
        double relToken = (perToken - perTokenSimulated).abs().max().item<float>() / Math.Max(1e-6, perTokenSimulated.abs().max().item<float>());
        Assert.That(relToken, Is.LessThan(1e-5), $"{name} on {isa}, per-token activations on the same kernel");
        bool samePacking = weightSpec.Granularity == QuantGranularity.PerGroup && weightSpec.GroupSize <= activationSpec.GroupSize;
        Assert.That(kernel.PackedWeightBytes, samePacking ? Is.EqualTo(bytes) : Is.GreaterThan(bytes), "the cache keys on the packing group");
    }

    [Test]
    public void IncompatibleGroupsFallBackToFakeQuantizationWithTheReason()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var linear = nn.Linear(192, 8);
        using var layer = new QuantLinear("fc", linear);
        var config = new LayerQuantConfig(QuantSpec.Weight(8, 48), QuantSpec.Activation(8, 64));
        layer.SetWeightVersion(QuantizedTensor.Quantize(linear.weight, config.Weight));
        layer.DefaultConfig = config;
        Assert.That(IntegerLinearKernel.WhyNotSupported(config, 192), Does.Contain("is not a multiple of the weight group size 48"));
        Assert.That(IntegerLinearKernel.WhyNotSupported(config), Does.Contain("is not a multiple of the weight group size 48"), "K unknown: the groups' relation");
        Assert.That(IntegerLinearKernel.WhyNotSupported(config with { Weight = QuantSpec.Weight(8) }, 100), Does.Contain("does not divide K = 100"));
        Assert.That(IntegerLinearKernel.WhyNotSupported(config with { Weight = QuantSpec.Weight(8) }), Is.Null);
        Assert.That(IntegerLinearKernel.WhyNotSupported(config with { Activation = QuantSpec.Activation(8, 64) with { Symmetric = false } }), Does.Contain("symmetric"));
        using var kernel = new IntegerLinearKernel(new KernelOptions { Isa = KernelIsa.Managed, Threads = 1 });
        layer.IntegerKernel = kernel;
        var x = torch.randn(3, 192);
        var y = layer.call(x);
        Assert.That((kernel.FallbackCalls, kernel.IntegerCalls), Is.EqualTo((1L, 0L)));
        layer.IntegerKernel = null;
        Assert.That(TestTensors.Identical(y, layer.call(x)), Is.True, "the fallback is the fake-quantized layer");
        using var strict = new IntegerLinearKernel(new KernelOptions { Isa = KernelIsa.Managed, Threads = 1 }) { Strict = true };
        layer.IntegerKernel = strict;
        Assert.That(Assert.Throws<NotSupportedException>(() => layer.call(x))!.Message, Does.Contain("fc").And.Contain("weight group size 48"));
    }
}
