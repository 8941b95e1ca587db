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

/// <summary>
/// TQ-DiT's multi-region quantizer after GELU (MRQ) on fc2's input: the quantizer, its positive-step search on a GELU-distributed
/// input against the symmetric per-tensor step, and the pipeline with <see cref="TqDitOptions.PostGeluMultiRegion"/>.
/// </summary>
public class TqDitMrqTests
{
    private const int Steps = 5;

    // GELU (tanh form, DiT's) of normal inputs with standard deviation `scale`: rows [n, features].
    private static Tensor GeluInputs(long n, long features, double scale, long seed)
    {
        using var scope = torch.NewDisposeScope();
        var z = TestTensors.Randn(seed, n, features) * scale;
        var gelu = 0.5 * z * (1 + torch.tanh(Math.Sqrt(2 / Math.PI) * (z + 0.044715 * z.pow(3))));
        return gelu.MoveToOuterDisposeScope();
    }

    [Test]
    public void ThePostGeluQuantizerUsesTheStepOfTheCallsGroup()
    {
        var q = new TqDitPostGeluQuantizer("blocks.0.mlp.fc2", 4, overallStep: 0.3, [(0, 1, 0.1), (2, 4, 0.2)]);
        Assert.That(q.NegativeStep, Is.EqualTo(0.16997124 / 8).Within(1e-12));
        Assert.That(q.PositiveStepAt(new TimestepInfo(1, 5, 0)), Is.EqualTo(0.1));
        Assert.That(q.PositiveStepAt(new TimestepInfo(3, 5, 0)), Is.EqualTo(0.2));
        Assert.That(q.PositiveStepAt(null), Is.EqualTo(0.3), "outside any step: the overall step");
        Assert.That(q.PositiveStepAt(new TimestepInfo(7, 10, 0)), Is.EqualTo(0.3), "a step outside every group: the overall step");
        using var x = torch.tensor(new float[] { -0.05f, 0.25f, 5f });
        using var inGroup = q.QuantizeDequantize(x, QuantSpec.Activation(4, dynamic: false), new TimestepInfo(3, 5, 0));
        using var expected = TqDitGrid.PostGelu(x, 4, 0.2);
        Assert.That(TestTensors.Identical(inGroup, expected), Is.True);
        var wrongBits = Assert.Throws<LayerQuantizationException>(() => q.QuantizeDequantize(x, QuantSpec.Activation(8, dynamic: false), null));
        Assert.That(wrongBits!.Message, Does.Contain("blocks.0.mlp.fc2").And.Contain("4-bit"));
        Assert.Throws<ArgumentException>(() => new TqDitPostGeluQuantizer("fc2", 4, 0.3, [(0, 2, 0.1), (2, 4, 0.2)]), "overlapping groups");
        Assert.That(TqDitPostGeluQuantizer.AppliesTo("blocks.3.mlp.fc2"), Is.True);
        Assert.That(TqDitPostGeluQuantizer.AppliesTo("mlp.fc2"), Is.True);
        Assert.That(TqDitPostGeluQuantizer.AppliesTo("blocks.3.mlp.fc1"), Is.False);
        Assert.That(TqDitPostGeluQuantizer.AppliesTo("blocks.3.notmlp.fc2"), Is.False);
    }

    [Test]
    public void OnAGeluInputMrqQuantizesWithASmallerErrorThanThePerTensorStepAt4Bits()
    {
        using var scope = torch.NewDisposeScope();
        var x = GeluInputs(1024, 16, 1.5, seed: 11);
        var options = new TqDitOptions();
        // The input error alone, each quantizer at its best step on the same grid (Δ0 from max|x| = max(x⁺) here).
        double d0 = TqDitGrid.InitialStep(x.abs().max().item<float>(), 4);
        var (qmin, qmax) = TqDitGrid.LibraryRange(4);
        double InputError(Tensor q) => (q - x).square().mean().item<float>();
        var candidates = TqDitGrid.Candidates(d0, options.Alpha, options.Beta, options.GridSteps);
        double symmetricStep = TqDitLayerSearch.Best(candidates, d => InputError(TqDitGrid.FakeQuantize(x, d, qmin, qmax)));
        double mrqStep = TqDitLayerSearch.Best(candidates, d => InputError(TqDitGrid.PostGelu(x, 4, d)));
        double symmetricError = InputError(TqDitGrid.FakeQuantize(x, symmetricStep, qmin, qmax));
        double mrqError = InputError(TqDitGrid.PostGelu(x, 4, mrqStep));

        // The layer search (fc2 with a random weight, g = 1): the weighted output error at the searched steps.
        var w = TestTensors.Randn(12, 8, 16) * 0.3;
        var g = torch.ones(1024, 8);
        var perTensor = TqDitLayerSearch.Search("blocks.0.mlp.fc2", w, null, x, g, null, 1, 1, weightBits: 8, activationBits: 4, options);
        var mrq = TqDitLayerSearch.Search("blocks.0.mlp.fc2", w, null, x, g, null, 1, 1, weightBits: 8, activationBits: 4, options, postGeluMultiRegion: true);
        TestContext.Out.WriteLine($"input MSE: per-tensor {symmetricError:E3} (step {symmetricStep:G4}), MRQ {mrqError:E3} (positive step {mrqStep:G4}); " +
            $"layer output error: per-tensor {perTensor.FinalError:E3}, MRQ {mrq.FinalError:E3}");

        Assert.That(mrqError, Is.LessThan(symmetricError));
        Assert.That((mrq.PostGeluMultiRegion, perTensor.PostGeluMultiRegion), Is.EqualTo((true, false)));
        Assert.That(mrq.FinalError, Is.LessThan(perTensor.FinalError));
        Assert.That(mrq.FinalError, Is.LessThanOrEqualTo(mrq.InitialError));
        Assert.That(mrq.ActivationSteps.Single(), Is.EqualTo(mrq.OverallActivationStep));
    }

    private static DiT Model() => DiTTests.RandomisedModel(DiTConfig.Mnist with { Depth = 1 });

    private static TqDitCalibrationCalls Calls(DiT model, long seed) =>
        TqDitCalibrationCalls.ForDiT(model, new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{Steps}")), ddim: true,
            new TrajectoryCalibrationOptions
            {
                Samples = 8, BatchSize = 8, Seed = seed,
                Sampling = new SamplingOptions { CfgScale = 2, NullClass = model.NullClass, ClipDenoised = true, Seed = seed + 1 },
            });

    // The outputs of the held-out calls replayed at their steps, and their mean relative error against the full-precision output.
    private static (Tensor[] Outputs, double Error) HeldOut(DiT model, TqDitCalibrationCalls calls)
    {
        using var noGrad = torch.no_grad();
        var outputs = new Tensor[calls.Count];
        double sum = 0;
        for (int i = 0; i < calls.Count; i++)
        {
            var c = calls.Calls[i];
            using var step = TimestepContext.Enter(c.Step);
            outputs[i] = model.call(c.X, c.T, c.Y);
            sum += TestTensors.RelativeError(outputs[i], c.Reference);
        }
        return (outputs, sum / calls.Count);
    }

    [Test]
    public void MrqOnFc2ChangesTheModelAndRestoreLeavesItsParametersBitIdentical()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var calibration = Calls(model, 7);
        using var heldOut = Calls(model, 100);
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        var options = new TqDitOptions { GridSteps = 20, RowsPerCall = 32 };
        QuantizationResult Run(TqDitOptions o) => new QuantizationBuilder().ForModel(model).Layers("blocks.*").ExcludeLayers("*adaLN_modulation*")
            .Weights(8).Activations(4, dynamic: false).UseTqDit(calibration, o).Build().Apply();

        var perTensor = Run(options);
        var (perTensorOut, perTensorError) = HeldOut(model, heldOut);
        Assert.That(ModelSurgery.FindQuantLinears(model).All(l => l.InputQuantizer is null), Is.True, "no MRQ without the option");
        var perTensorFc2 = ((TqDitReport)perTensor.SearchOutcome!.Report!).Layers.Single(l => l.Layer == "blocks.0.mlp.fc2");
        perTensor.Restore();
        AssertParametersAre(before, model);

        var mrq = Run(options with { PostGeluMultiRegion = true });
        var (mrqOut, mrqError) = HeldOut(model, heldOut);
        var report = (TqDitReport)mrq.SearchOutcome!.Report!;
        var mrqFc2 = report.Layers.Single(l => l.Layer == "blocks.0.mlp.fc2");
        TestContext.Out.WriteLine($"W8A4, held-out relative error: per-tensor fc2 input {perTensorError:P2}, MRQ {mrqError:P2}; " +
            $"fc2 weighted error {perTensorFc2.FinalError:E3} → {mrqFc2.FinalError:E3}");

        var layers = ModelSurgery.FindQuantLinears(model);
        var fc2 = layers.Single(l => l.LayerName == "blocks.0.mlp.fc2");
        var quantizer = fc2.InputQuantizer as TqDitPostGeluQuantizer;
        Assert.That(quantizer, Is.Not.Null);
        Assert.That(quantizer!.Bits, Is.EqualTo(4));
        // One positive step per TGQ group (report.Groups is in group order: group 0 holds the last steps).
        Assert.That(quantizer.GroupSteps.Select(s => (s.FirstStep, s.LastStep)), Is.EquivalentTo(report.Groups));
        for (int k = 0; k < report.Groups.Count; k++)
            Assert.That(quantizer.PositiveStepAt(new TimestepInfo(report.Groups[k].FirstStep, Steps, 0)), Is.EqualTo(mrqFc2.ActivationSteps[k]), $"group {k}");
        Assert.That(quantizer.OverallStep, Is.EqualTo(mrqFc2.OverallActivationStep));
        Assert.That(layers.Where(l => l != fc2).All(l => l.InputQuantizer is null), Is.True, "only fc2's input is post-GELU");
        Assert.That(report.Layers.Select(l => (l.Layer, l.PostGeluMultiRegion)), Is.EquivalentTo(new[]
        {
            ("blocks.0.attn.qkv", false), ("blocks.0.attn.proj", false), ("blocks.0.mlp.fc1", false), ("blocks.0.mlp.fc2", true),
        }));
        Assert.That(IntegerLinearKernel.WhyNotSupported(fc2, fc2.ActiveConfig), Does.Contain("custom activation quantizer"));
        // Only fc2 differs between the two runs (the other layers' searches see the same rows and gradients).
        Assert.That(Enumerable.Range(0, heldOut.Count).Max(i => TestTensors.RelativeError(mrqOut[i], perTensorOut[i])), Is.GreaterThan(1e-4),
            "MRQ on fc2 changes the output");
        Assert.That(mrqFc2.FinalError, Is.LessThan(perTensorFc2.FinalError), "fc2's weighted output error is lower with MRQ");

        mrq.Restore();
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
        AssertParametersAre(before, model);
    }

    private static void AssertParametersAre(Dictionary<string, Tensor> expected, nn.Module model)
    {
        var actual = model.state_dict();
        Assert.That(actual.Keys, Is.EquivalentTo(expected.Keys));
        foreach (var (name, value) in expected)
            Assert.That(TestTensors.Identical(actual[name], value), Is.True, $"{name} is bit-identical after Restore()");
    }
}
