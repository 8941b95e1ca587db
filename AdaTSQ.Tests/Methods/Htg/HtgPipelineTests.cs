using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Htg;
using AdaTSQ.Models.DiT;
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using AdaTSQ.Tests.Kernels;
using AdaTSQ.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Htg;

/// <summary>
/// HTG through the builder: on one linear layer whose input channels are offset differently in two phases of the steps
/// (the groups, the group-dependent bias, exactness at full precision, lower error than RTN, the integer kernels), and
/// on a tiny DiT (the re-parameterized model equals the original; Restore gives it back bit for bit).
/// </summary>
public class HtgPipelineTests
{
    private const int Steps = 10;
    private const int In = 32;

    // Step k: N(0, 0.5²) plus per-channel offsets, one set for steps 0–4 and another for steps 5–9 (a few large channels).
    private static Tensor StepInput(int step, long seed)
    {
        using var scope = torch.NewDisposeScope();
        var offsets = torch.zeros(In);
        offsets[3] = torch.tensor(step < 5 ? 12f : -9f);
        offsets[17] = torch.tensor(step < 5 ? -6f : 15f);
        offsets[25] = torch.tensor(step < 5 ? 8f : 8.5f);
        var x = TestTensors.Randn(seed * 100 + step, 64, In) * 0.5 + offsets;
        return x.MoveToOuterDisposeScope();
    }

    private static nn.Module<Tensor, Tensor> LinearModel()
    {
        var model = nn.Sequential(("fc", nn.Linear(In, 16)));
        using var noGrad = torch.no_grad();
        var gen = new Generator(11);
        foreach (var (_, p) in model.named_parameters()) p.copy_(torch.randn(p.shape, generator: gen) * 0.2);
        return model;
    }

    // Runs the model once per step inside that step's TimestepContext.
    private sealed class StepSource(nn.Module<Tensor, Tensor> model, long seed) : ICalibrationSource
    {
        public int Count => Steps;

        public void Run(int index, CancellationToken cancellationToken)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var step = TimestepContext.Enter(new TimestepInfo(index, Steps, 999 - 100 * index));
            model.call(StepInput(index, seed));
        }
    }

    private static QuantLinear Fc(nn.Module model) => ModelSurgery.FindQuantLinears(model).Single();

    // Relative output error against the float model on fresh inputs at every step.
    private static double StepError(nn.Module<Tensor, Tensor> model, IReadOnlyList<Tensor> reference)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double err = 0, norm = 0;
        for (int k = 0; k < Steps; k++)
        {
            using var step = TimestepContext.Enter(new TimestepInfo(k, Steps, 999 - 100 * k));
            var y = model.call(StepInput(k, seed: 2));
            err += (y - reference[k]).square().sum().item<float>();
            norm += reference[k].square().sum().item<float>();
        }
        return Math.Sqrt(err / norm);
    }

    private static List<Tensor> Reference(nn.Module<Tensor, Tensor> model)
    {
        using var noGrad = torch.no_grad();
        return Enumerable.Range(0, Steps).Select(k => model.call(StepInput(k, seed: 2)).DetachFromDisposeScope()).ToList();
    }

    [Test]
    public void TheTwoPhasesBecomeTheTwoGroupsEachWithItsShiftAndBias()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LinearModel();
        var result = new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData(new StepSource(model, 1))
            .UseHtg(new HtgOptions { Groups = 2 }).Build().Apply();
        var fc = Fc(model);
        Assert.That(fc.InputShiftGroups, Is.EqualTo(new[] { (0, 4), (5, 9) }));
        using var noGrad = torch.no_grad();
        var z0 = fc.InputShiftAt(2)!;
        var z1 = fc.InputShiftAt(7)!;
        Assert.That(z0[3].item<float>(), Is.EqualTo(12f).Within(1f), "group 0's shift follows its channel offset");
        Assert.That(z1[3].item<float>(), Is.EqualTo(-9f).Within(1f));
        Assert.That(z1[17].item<float>(), Is.EqualTo(15f).Within(1f));
        // The bias of a shifted call is b + W·z_g, with the float W, and differs between the groups.
        var b0 = fc.ShiftedBiasAt(2)!;
        var b1 = fc.ShiftedBiasAt(7)!;
        Assert.That(TestTensors.RelativeError(b0, fc.Bias! + fc.Weight.mv(z0)), Is.LessThan(1e-6));
        Assert.That(TestTensors.RelativeError(b1, fc.Bias! + fc.Weight.mv(z1)), Is.LessThan(1e-6));
        Assert.That((b0 - b1).abs().max().item<float>(), Is.GreaterThan(1f));
        Assert.That(fc.InputSmoothing, Is.Not.Null, "the scale is the layer's smoothing");
        // Outside every step: the default shift, the mean of all steps' shifts.
        Assert.That(fc.InputShiftAt(null)![3].item<float>(), Is.EqualTo(1.5f).Within(1f));
        result.Restore();
    }

    [Test]
    public void ShiftAndScaleWithoutQuantizationGiveTheOriginalOutput()
    {
        using var scope = torch.NewDisposeScope();
        using var model = LinearModel();
        var reference = Reference(model);
        using var outside = torch.no_grad();
        var unscoped = model.call(StepInput(0, seed: 3));
        var result = new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData(new StepSource(model, 1))
            .UseHtg(new HtgOptions { Groups = 2 }).Build().Apply();
        var fc = Fc(model);
        fc.Policy = new StaticTimestepPolicy(LayerQuantConfig.FullPrecision);
        fc.FullPrecisionThroughTransforms = true;
        Assert.That(StepError(model, reference), Is.LessThan(1e-5), "(x − z_g)/s · (W·diag(s))ᵀ + b + W·z_g = x·Wᵀ + b at every step");
        Assert.That(TestTensors.RelativeError(model.call(StepInput(0, seed: 3)), unscoped), Is.LessThan(1e-5), "and outside any step");
        result.Restore();
    }

    [TestCase(8)]
    [TestCase(4)]
    public void HtgHasALowerOutputErrorThanRtn(int weightBits)
    {
        using var scope = torch.NewDisposeScope();
        using var model = LinearModel();
        var reference = Reference(model);
        var rtn = new QuantizationBuilder().ForModel(model).Weights(weightBits).Activations(8).Build().Apply();
        double rtnError = StepError(model, reference);
        rtn.Restore();
        var htg = new QuantizationBuilder().ForModel(model).Weights(weightBits).Activations(8).CalibrationData(new StepSource(model, 1))
            .UseHtg(new HtgOptions { Groups = 2 }).Build().Apply();
        double htgError = StepError(model, reference);
        htg.Restore();
        TestContext.Out.WriteLine($"W{weightBits}A8 relative output error: RTN {rtnError:P2}, HTG {htgError:P2}");
        Assert.That(htgError, Is.LessThan(0.5 * rtnError));
    }

    [Test]
    public void TheIntegerKernelsComputeTheShiftedCall()
    {
        NativeTestSupport.RequireNativeLibrary();
        using var scope = torch.NewDisposeScope();
        using var model = LinearModel();
        var result = new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData(new StepSource(model, 1))
            .UseHtg(new HtgOptions { Groups = 2 }).Build().Apply();
        using var noGrad = torch.no_grad();
        using var kernel = new IntegerLinearKernel { Strict = true };
        foreach (int k in new[] { 1, 8 })
        {
            using var step = TimestepContext.Enter(new TimestepInfo(k, Steps, 999 - 100 * k));
            var x = StepInput(k, seed: 4);
            var fake = model.call(x);
            IntegerLinearKernel.Attach(model, kernel);
            var integer = model.call(x);
            IntegerLinearKernel.Attach(model, null);
            Assert.That(TestTensors.RelativeError(integer, fake), Is.LessThan(0.02), $"step {k}");
        }
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2));
        result.Restore();
    }

    private const int DiTSteps = 10;

    private static DiT ShiftedDiT()
    {
        var model = DiTTests.RandomisedModel(DiTConfig.Mnist with { Depth = 1 });
        // Large per-channel offsets in the adaLN shifts of the attention and MLP branches (β_msa, β_mlp): the inputs of
        // qkv and fc1 then have channels far from zero, which per-token activation quantization handles badly.
        using var noGrad = torch.no_grad();
        long h = model.Config.HiddenSize;
        var bias = model.named_parameters().Single(p => p.name == "blocks.0.adaLN_modulation.1.bias").parameter;
        var gen = new Generator(21);
        var offsets = (torch.rand(h, generator: gen) < 0.1).to(ScalarType.Float32) * (torch.randn(h, generator: gen) * 6);
        bias[TensorIndex.Slice(0, h)].add_(offsets);
        bias[TensorIndex.Slice(3 * h, 4 * h)].add_(offsets.flip(0));
        return model;
    }

    private static TrajectoryCalibrationSource Source(DiT model) =>
        TrajectoryCalibrationSource.ForDiT(model, new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{DiTSteps}")), ddim: true,
            new TrajectoryCalibrationOptions
            {
                Samples = 8, BatchSize = 8, Seed = 7,
                Sampling = new SamplingOptions { CfgScale = 1.5, NullClass = model.NullClass, ClipDenoised = true, Seed = 8 },
            });

    // The model's output at a few timesteps, each inside the calibration step it belongs to.
    private static List<Tensor> Outputs(DiT model)
    {
        using var noGrad = torch.no_grad();
        var c = model.Config;
        var outputs = new List<Tensor>();
        foreach (int k in new[] { 0, 4, 9 })
        {
            using var step = TimestepContext.Enter(new TimestepInfo(k, DiTSteps, 999 - 111 * k));
            var gen = new Generator((ulong)(30 + k));
            var x = torch.randn([4, c.InChannels, c.InputSize, c.InputSize], generator: gen);
            var t = torch.full(4, 999 - 111 * k, ScalarType.Float32);
            var y = torch.tensor(new long[] { 0, 1, 2, 3 });
            outputs.Add(model.call(x, t, y).DetachFromDisposeScope());
        }
        return outputs;
    }

    private static double Error(List<Tensor> actual, List<Tensor> expected)
    {
        using var scope = torch.NewDisposeScope();
        return Math.Sqrt(actual.Zip(expected).Sum(p => (p.First - p.Second).square().sum().item<float>())
            / expected.Sum(e => e.square().sum().item<float>()));
    }

    [Test]
    public void OnATinyDiTTheReparameterizedModelEqualsTheOriginalAndRestoreGivesItBack()
    {
        using var scope = torch.NewDisposeScope();
        using var model = ShiftedDiT();
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var reference = Outputs(model);

        var rtn = new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(8).Activations(8).Build().Apply();
        double rtnError = Error(Outputs(model), reference);
        rtn.Restore();

        var result = new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(8).Activations(8)
            .CalibrationData(Source(model)).UseHtg().Build().Apply();
        var layers = ModelSurgery.FindQuantLinears(model);
        Assert.That(layers.Count(l => l.HasInputShift), Is.EqualTo(5), "every quantized layer of the block (qkv, proj, fc1, fc2, adaLN) is shifted");
        Assert.That(layers.All(l => l.InputShiftGroups.Count == 1), Is.True, "G = 10 steps / 10 = 1 group");
        double htgError = Error(Outputs(model), reference);
        TestContext.Out.WriteLine($"tiny DiT W8A8 relative output error: RTN {rtnError:P2}, HTG {htgError:P2}");
        Assert.That(htgError, Is.LessThan(rtnError));

        if (NativeTestSupport.NativeLibraryExpected)
        {
            // On the integer kernels qkv and fc1 run fused with their LayerNorm + modulate prologue: the shift joins the
            // modulation's β per call (the paper's adaLN fold), the bias is b + W·z_g.
            var fake = Outputs(model);
            using var kernel = new IntegerLinearKernel { Strict = true };
            IntegerLinearKernel.Attach(model, kernel);
            var integer = Outputs(model);
            IntegerLinearKernel.Attach(model, null);
            TestContext.Out.WriteLine($"integer vs fake: {Error(integer, fake):P3} ({kernel.IntegerCalls} integer calls)");
            Assert.That(kernel.IntegerCalls, Is.GreaterThan(0));
            Assert.That(Error(integer, fake), Is.LessThan(0.25 * htgError), "the integer kernels compute the fake-quantized model up to rounding");
        }

        foreach (var l in layers)
        {
            l.Policy = new StaticTimestepPolicy(LayerQuantConfig.FullPrecision);
            l.FullPrecisionThroughTransforms = true;
        }
        Assert.That(Error(Outputs(model), reference), Is.LessThan(1e-5), "shift and scale with quantization off give the original output");

        result.Restore();
        foreach (var (name, p) in model.named_parameters())
            Assert.That(TestTensors.Identical(p, original[name]), Is.True, $"{name} back to its original value");
        var restored = Outputs(model);
        Assert.That(restored.Zip(reference).All(p => TestTensors.Identical(p.First, p.Second)), Is.True, "the restored model computes bit for bit what it did");
    }
}
