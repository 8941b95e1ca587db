using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Methods.Ptq4Dit;
using AdaTSQ.Models.DiT;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using AdaTSQ.Tests.Kernels;
using AdaTSQ.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Ptq4Dit;

/// <summary>PTQ4DiT through the builder on a DiT: balancing from the model's own trajectories, GPTQ, W4A4 on the integer kernels, undo.</summary>
public class Ptq4DitPipelineTests
{
    private const int Steps = 5;

    private static DiT Model() => DiTTests.RandomisedModel(DiTConfig.Mnist with { Depth = 1 });

    private static TrajectoryCalibrationSource Source(DiT model) =>
        TrajectoryCalibrationSource.ForDiT(model, new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{Steps}")), ddim: true,
            new TrajectoryCalibrationOptions
            {
                Samples = 8, BatchSize = 8, Seed = 7,
                Sampling = new SamplingOptions { CfgScale = 2, NullClass = model.NullClass, ClipDenoised = true, Seed = 8 },
            });

    private static (Tensor X, Tensor T, Tensor Y) Inputs(DiT model)
    {
        var c = model.Config;
        var gen = new Generator(3);
        return (torch.randn([6, c.InChannels, c.InputSize, c.InputSize], generator: gen),
            torch.tensor(new float[] { 3, 100, 250, 500, 750, 999 }), torch.tensor(new long[] { 0, 1, 2, 3, 4, c.NumClasses }));
    }

    [Test]
    public void GptqAtW4A4OnTheIntegerKernelsAfterTheFoldAndRestoreUndoesIt()
    {
        NativeTestSupport.RequireNativeLibrary();
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        var (x, t, y) = Inputs(model);
        Tensor reference;
        using (torch.no_grad()) reference = model.call(x, t, y);
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

        using var balancing = new Ptq4DitBalancing(model);
        var activations = QuantSpec.Activation(4) with { Granularity = QuantGranularity.PerGroup, GroupSize = 64 };
        var result = new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(4, groupSize: 64).Activations(activations)
            .CalibrationData(Source(model)).UsePtq4Dit(balancing).UseHessianOptimization().Build().Apply();

        Assert.That(balancing.IsApplied, Is.True);
        Assert.That(balancing.Reports.Select(r => r.Layer), Is.EquivalentTo(new[] { "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1" }));
        foreach (var r in balancing.Reports)
        {
            Assert.That(r.Steps, Is.EqualTo(Enumerable.Range(0, Steps)), $"{r.Layer}: one ρ per sampling step");
            Assert.That(r.Eta.Sum(), Is.EqualTo(1).Within(1e-12));
            Assert.That(r.Rho.All(v => v >= -1 && v <= 1), Is.True);
            Assert.That(r.MaxFactor / r.MinFactor, Is.GreaterThan(1.5), $"{r.Layer}: the factors are not trivial");
        }
        var layers = ModelSurgery.FindQuantLinears(model);
        Assert.That(layers.All(l => l.InputSmoothing is null && l.InputRotation is null), Is.True, "nothing of PTQ4DiT is left in the layers' calls");

        using var noGrad = torch.no_grad();
        // The pipeline's own factors, at full precision: the folded model computes the reference.
        foreach (var l in layers) l.Policy = new global::AdaTSQ.Policies.StaticTimestepPolicy(LayerQuantConfig.FullPrecision);
        Assert.That(TestTensors.RelativeError(model.call(x, t, y), reference), Is.LessThan(1e-5));
        foreach (var l in layers) l.Policy = result.Policy;

        var fake = model.call(x, t, y);
        using var kernel = new IntegerLinearKernel();
        IntegerLinearKernel.Attach(model, kernel);
        var integer = model.call(x, t, y);
        IntegerLinearKernel.Attach(model, null);
        double rmsDiff = (integer - fake).square().mean().sqrt().item<float>();
        double rmsQuant = (fake - reference).square().mean().sqrt().item<float>();
        TestContext.Out.WriteLine($"PTQ4DiT + GPTQ W4A4 g64/ag64: relative error vs FP {TestTensors.RelativeError(fake, reference):P1}; rms |int − fake| {rmsDiff:G3} vs rms |fake − fp| {rmsQuant:G3}; {kernel.IntegerCalls} integer calls, {kernel.FallbackCalls} fallbacks");
        Assert.That(kernel.IntegerCalls, Is.GreaterThan(0));
        Assert.That(kernel.FallbackCalls, Is.Zero, "every quantized call ran on the integer kernels");
        Assert.That(rmsDiff, Is.LessThan(0.25 * rmsQuant), "the integer kernels compute the fake-quantized model up to rounding");
        Assert.That(TestTensors.RelativeError(fake, reference), Is.LessThan(1.0));

        result.Restore();
        Assert.That(balancing.IsApplied, Is.False, "Restore() undid the fold");
        Assert.Throws<InvalidOperationException>(() => balancing.Undo(), "nothing left to undo");
        foreach (var (name, p) in model.named_parameters())
            Assert.That(TestTensors.Identical(p, original[name]), Is.True, $"{name} back to its original value");
        Assert.That(TestTensors.Identical(model.call(x, t, y), reference), Is.True);
    }

    [Test]
    public void ARunThatFailsAfterTheFoldPutsTheModelBack()
    {
        // Cancelled in the quantize stage, after the calibrator folded the balancing: the pipeline restores the layers
        // and reverts the fold, so the model's parameters are exactly the originals.
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        using var balancing = new Ptq4DitBalancing(model);
        using var cts = new CancellationTokenSource();
        bool foldedWhenCancelled = false;
        var progress = new SynchronousProgress(p =>
        {
            if (p.Stage != "quantize" || cts.IsCancellationRequested) return;
            foldedWhenCancelled = balancing.IsApplied;
            cts.Cancel();
        });
        Assert.Catch<OperationCanceledException>(() => new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(4).Activations(8)
            .CalibrationData(Source(model)).UsePtq4Dit(balancing).WithProgress(progress).Build().Apply(cts.Token));
        Assert.That(foldedWhenCancelled, Is.True, "the fold had run when the run was cancelled");
        Assert.That(balancing.IsApplied, Is.False);
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
        foreach (var (name, p) in model.named_parameters())
            Assert.That(TestTensors.Identical(p, original[name]), Is.True, $"{name} back to its original value");
    }

    private sealed class SynchronousProgress(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }

    [Test]
    public void OnTheDiTsOwnInputsTheBalancedSaliencesAreEqual()
    {
        // CSB without SSC on fc1 (qkv's weight would also carry proj's value-row factors): after the fold, the largest
        // |input| of each channel, captured again, equals the largest |weight| of its column — both √(s(X)·s(W)).
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        ModelSurgery.ReplaceLinears(model, new LayerSelector(["blocks.*"], []));
        var layers = ModelSurgery.FindQuantLinears(model);
        var fc1 = layers.Single(l => l.LayerName == "blocks.0.mlp.fc1");
        using var before = new UniformCalibrator().Calibrate(layers, Source(model), CalibrationRequirements.None);
        var sX = before.For(fc1.LayerName)!.ChannelAbsMax!.to(ScalarType.Float64);
        var sW = SalienceBalancing.WeightSalience(fc1.Weight);
        using var balancing = new Ptq4DitBalancing(model, new Ptq4DitOptions { Layers = BalancedLayers.MlpFc1 | BalancedLayers.AttentionQkv, SalienceCalibration = false });
        balancing.Apply(before);
        using var after = new UniformCalibrator().Calibrate(layers, Source(model), CalibrationRequirements.None);
        var geometric = (sX * sW).sqrt();
        Assert.That(TestTensors.RelativeError(after.For(fc1.LayerName)!.ChannelAbsMax!, geometric), Is.LessThan(1e-4), "activation salience after balancing");
        Assert.That(TestTensors.RelativeError(SalienceBalancing.WeightSalience(fc1.Weight), geometric), Is.LessThan(1e-6), "weight salience after balancing");
        Assert.That(TestTensors.RelativeError(sX, sW), Is.GreaterThan(0.5), "they were far apart before");
        balancing.Undo();
        ModelSurgery.Restore(model);
    }

    [Test]
    public void ThePlanIsCheckedAndAFoldThatDidNotRunStopsQuantization()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var balancing = new Ptq4DitBalancing(model);
        var noData = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(4).UsePtq4Dit(balancing).Build());
        Assert.That(noData!.Message, Does.Contain("UsePtq4Dit needs calibration data"));
        Assert.Throws<ArgumentException>(() => new Ptq4DitBalancing(model, new Ptq4DitOptions { Layers = BalancedLayers.None, SalienceFloor = -1 }));

        // A calibrator set after UsePtq4Dit replaces PTQ4DiT's: the fold never runs, and the quantize stage says so.
        var e = Assert.Throws<CalibrationException>(() => new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(8).Activations(8)
            .CalibrationData(Source(model)).UsePtq4Dit(balancing).Calibrator(new UniformCalibrator()).Build().Apply());
        Assert.That(e!.Message, Does.Contain("not folded"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "the failed run put the original layers back");

        // A selection without a balanceable layer is named.
        var none = Assert.Throws<CalibrationException>(() => new QuantizationBuilder().ForModel(model).Layers("blocks.*.mlp.fc2").Weights(8).Activations(8)
            .CalibrationData(Source(model)).UsePtq4Dit(balancing).Build().Apply());
        Assert.That(none!.Message, Does.Contain("blocks.0.mlp.fc2"));
        Assert.That(balancing.IsApplied, Is.False);
    }
}
