using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.TqDit;
using AdaTSQ.Models.DiT;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using AdaTSQ.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.TqDit;

/// <summary>TQ-DiT through the builder on a small random DiT, against per-tensor RTN with min/max static ranges.</summary>
public class TqDitPipelineTests
{
    private const int Steps = 5;

    private static DiT Model() => DiTTests.RandomisedModel(DiTConfig.Mnist with { Depth = 1 });

    private static TqDitCalibrationCalls Calls(DiT model, long seed) =>
        TqDitCalibrationCalls.ForDiT(model, new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{Steps}")), ddim: true,
            new TrajectoryCalibrationOptions
            {
                Samples = 8, BatchSize = 8, Seed = seed,
                Sampling = new SamplingOptions { CfgScale = 2, NullClass = model.NullClass, ClipDenoised = true, Seed = seed + 1 },
            });

    // The mean, over held-out calls replayed at their steps, of the relative error against the full-precision output.
    private static double HeldOutError(DiT model, TqDitCalibrationCalls calls)
    {
        using var noGrad = torch.no_grad();
        double sum = 0;
        foreach (var c in calls.Calls)
        {
            using var scope = torch.NewDisposeScope();
            using var step = TimestepContext.Enter(c.Step);
            sum += TestTensors.RelativeError(model.call(c.X, c.T, c.Y), c.Reference);
        }
        return sum / calls.Count;
    }

    private static QuantizationBuilder Selected(DiT model) =>
        new QuantizationBuilder().ForModel(model).Layers("blocks.*").ExcludeLayers("*adaLN_modulation*");

    [TestCase(6, 6)]
    [TestCase(4, 8)]
    public void BeatsPerTensorRtnOnHeldOutCalls(int weightBits, int activationBits)
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var calibration = Calls(model, 7);
        using var heldOut = Calls(model, 100);

        var rtnWeights = QuantSpec.Weight(weightBits) with { Granularity = QuantGranularity.PerTensor };
        var rtn = Selected(model).Weights(rtnWeights).Activations(activationBits, dynamic: false).CalibrationData(calibration).Build().Apply();
        double rtnError = HeldOutError(model, heldOut);
        rtn.Restore();

        var progress = new List<QuantizationProgress>();
        var tq = Selected(model).Weights(weightBits).Activations(activationBits, dynamic: false)
            .UseTqDit(calibration, new TqDitOptions { GridSteps = 20, RowsPerCall = 32 }).WithProgress(new Sync(progress.Add)).Build().Apply();
        double tqError = HeldOutError(model, heldOut);
        var report = (TqDitReport)tq.SearchOutcome!.Report!;
        TestContext.Out.WriteLine($"W{weightBits}A{activationBits}: held-out relative error RTN per-tensor {rtnError:P2}, TQ-DiT {tqError:P2}; " +
            $"{report.Layers.Count} layers, {report.Rows} rows each, groups {string.Join(" ", report.Groups)}, {report.Elapsed.TotalSeconds:F1} s");

        Assert.That(report.Layers.Select(l => l.Layer), Is.EquivalentTo(new[] { "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2" }));
        Assert.That(report.Layers.Single(l => l.Layer.EndsWith("qkv")).WeightSteps, Has.Count.EqualTo(3));
        Assert.That(report.Groups, Has.Count.EqualTo(Steps), "10 groups capped at the 5 calibration steps");
        Assert.That(report.Layers.All(l => l.ActivationSteps.Count == Steps && l.FinalError <= l.InitialError), Is.True);
        Assert.That(report.Layers.Any(l => l.ActivationSteps.Distinct().Count() > 1), Is.True, "TGQ: steps differ between groups");
        var qkv = ModelSurgery.FindQuantLinears(model).Single(l => l.LayerName.EndsWith("qkv"));
        Assert.That(qkv.StaticRangeGroups(QuantSpec.Activation(activationBits, dynamic: false)), Has.Count.EqualTo(Steps));
        Assert.That(progress.Any(p => p.Stage == "tqdit-gradients") && progress.Any(p => p.Stage == "tqdit-search"), Is.True);
        Assert.That(model.parameters().All(p => p.grad is null), Is.True, "the replay leaves no gradient on the model");
        Assert.That(tqError, Is.LessThan(rtnError));
        tq.Restore();
    }

    [Test]
    public void CallsRecordedFromATrajectorySourceAreTheSamplersCalls()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var direct = Calls(model, 7);
        var source = TrajectoryCalibrationSource.ForDiT(model, new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{Steps}")), ddim: true,
            new TrajectoryCalibrationOptions
            {
                Samples = 8, BatchSize = 8, Seed = 7,
                Sampling = new SamplingOptions { CfgScale = 2, NullClass = model.NullClass, ClipDenoised = true, Seed = 8 },
            });
        using var hooked = TqDitCalibrationCalls.Record(model, source);
        Assert.That(hooked.Count, Is.EqualTo(Steps));
        Assert.That(hooked.Calls.Select(c => c.Step.StepIndex), Is.EqualTo(Enumerable.Range(0, Steps)));
        for (int i = 0; i < Steps; i++)
        {
            Assert.That(TestTensors.Identical(hooked.Calls[i].X, direct.Calls[i].X), Is.True);
            Assert.That(TestTensors.Identical(hooked.Calls[i].Reference, direct.Calls[i].Reference), Is.True);
        }
    }

    [Test]
    public void UnimplementedPartsAndWrongSpecsAreRefusedAtBuild()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var calls = Calls(model, 7);
        var matmuls = Assert.Throws<QuantizationConfigurationException>(() => Selected(model).Weights(8).Activations(8, dynamic: false)
            .UseTqDit(calls, new TqDitOptions { PostGeluMultiRegion = true, QuantizeAttentionMatmuls = true }).Build());
        Assert.That(matmuls!.Message, Does.Contain("attention matmul").And.Not.Contain("GELU"), "MRQ after GELU is implemented");
        Assert.That(new TqDitOptions { PostGeluMultiRegion = true }.FindProblems(), Is.Empty);
        Assert.DoesNotThrow(() => Selected(model).Weights(8).Activations(8, dynamic: false).UseTqDit(calls, new TqDitOptions { PostGeluMultiRegion = true }).Build());
        var dynamic = Assert.Throws<QuantizationConfigurationException>(() => Selected(model).Weights(8).Activations(8).UseTqDit(calls).Build());
        Assert.That(dynamic!.Message, Does.Contain("static per-tensor"));
    }

    private sealed class Sync(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }
}
