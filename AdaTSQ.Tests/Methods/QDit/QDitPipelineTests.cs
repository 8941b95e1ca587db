using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.QDit;
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using AdaTSQ.Tests.Methods.AdaTSQ.Search;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.QDit;

/// <summary>Q-DiT through the pipeline on the toy diffusion of the bit-width search tests (fc1: K = 16, fc2: K = 64).</summary>
public class QDitPipelineTests
{
    private static readonly double[] Gains = [0.5, 2.0, 10.0, 2.0, 0.5];

    /// <summary>
    /// K = 16 chooses from {8, per-channel}, K = 64 from {8, 16, 32, per-channel}; the reference is g16 (per channel for
    /// fc1). The mean-group-size bound leaves seven legal assignments (the scale-operation bound only three on this toy).
    /// </summary>
    private static readonly QDitOptions Small = new()
    {
        GroupSizes = [8, 16, 32, 0], ReferenceGroupSize = 16, Constraint = QDitConstraint.MeanGroupSize, Population = 6, Generations = 3, SelectCount = 3,
        MutationCount = 2, CrossoverCount = 2, Seed = 5, MutationProbability = 0.5,
    };

    private static TrajectoryCalibrationSource Calibration(ToySearchModel model, SearchTrajectories trajectories)
    {
        var stepper = trajectories.Sampler;
        TrajectorySampler run = (m, noise, labels, o, ct) =>
        {
            var x = noise.clone();
            for (int k = 0; k < stepper.StepCount; k++) { var next = stepper.Step(m, x, labels, k); x.Dispose(); x = next; }
            return x;
        };
        return new TrajectoryCalibrationSource((x, t, y) => model.call(x, t, y), run, [1, 4, 4], 1, CPU, new TrajectoryCalibrationOptions { Samples = 16, BatchSize = 8, Seed = 3 });
    }

    private static QuantizationResult Quantize(ToySearchModel model, SearchTrajectories trajectories, QDitOptions options) =>
        new QuantizationBuilder().ForModel(model).Weights(4).Activations(4)
            .CalibrationData(Calibration(model, trajectories))
            .UseQDit(model, trajectories, options)
            .Build().Apply();

    [Test]
    public void TheChosenGroupSizesEndUpInEachLayersSpecsAndOnlyTheirVersionsAreKept()
    {
        using var model = new ToySearchModel(seed: 21);
        using var trajectories = model.Trajectories(Gains, samples: 4);
        var result = Quantize(model, trajectories, Small);
        var search = result.QDit!;
        TestContext.Out.Write(search.FormatSummary());

        Assert.That(result.QuantizerName, Does.Contain("GPTQ"), "Q-DiT quantizes weights with GPTQ by default");
        Assert.That(search.Assignment.GroupSizes.Keys, Is.EquivalentTo(new[] { "fc1", "fc2" }));
        foreach (var layer in ModelSurgery.FindQuantLinears(model))
        {
            int g = search.Assignment[layer.LayerName];
            Assert.That(QDitGroupSearch.ChoicesFor(Small, layer.InFeatures), Does.Contain(g));
            var config = layer.ActiveConfig;
            Assert.That(config.Weight.GroupSize, Is.EqualTo(g), layer.LayerName);
            Assert.That(config.Weight.Granularity, Is.EqualTo(g == 0 ? QuantGranularity.PerChannel : QuantGranularity.PerGroup));
            Assert.That(config.Activation.GroupSize, Is.EqualTo(g), "activations are grouped like the weights");
            Assert.That(config.Activation.Granularity, Is.EqualTo(g == 0 ? QuantGranularity.PerToken : QuantGranularity.PerGroup));
            Assert.That(config.Activation.Dynamic, Is.True);
            Assert.That(config.WeightBits, Is.EqualTo(4));
            Assert.That(config.ActivationBits, Is.EqualTo(4));
            Assert.That(layer.WeightVersions, Is.EquivalentTo(new[] { config.Weight }), "the other candidates' versions are dropped");
        }
        Assert.That(search.Constraint, Is.EqualTo(QDitConstraint.MeanGroupSize));
        Assert.That(search.Cost, Is.GreaterThanOrEqualTo(search.CostLimit * (1 - 1e-12)), "a mean group size no smaller than the reference's");
        Assert.That(search.FinalMse, Is.LessThanOrEqualTo(search.ReferenceMse), "the uniform reference is a candidate, so the best is at least as good");
        Assert.That(search.Evaluations, Is.GreaterThan(1));
        Assert.That(search.IntegerKernelCalls, Is.GreaterThan(0), "on the CPU the candidates run on the integer kernels");
        Assert.That(ModelSurgery.FindQuantLinears(model).Select(l => l.IntegerKernel), Has.All.Null, "the search's kernel is detached afterwards");
        Assert.That(search.ModelCalls, Is.EqualTo((search.Evaluations + 1) * Gains.Length + 1), "one trajectory per assignment, the FP one, and the MAC count");
        result.Restore();
    }

    [Test]
    public void TheSameSeedChoosesTheSameGroupsAndTheAssignmentReplaysFromJson()
    {
        using var model = new ToySearchModel(seed: 22);
        using var trajectories = model.Trajectories(Gains, samples: 4);
        var first = Quantize(model, trajectories, Small);
        var assignment = first.QDit!.Assignment;
        using var x = trajectories.Noise.clone();
        using var labels = trajectories.Labels.clone();
        using var searched = trajectories.Sampler.Step(trajectories.Model, x, labels, 2);
        first.Restore();

        var second = Quantize(model, trajectories, Small);
        Assert.That(second.QDit!.Assignment.GroupSizes, Is.EqualTo(assignment.GroupSizes));
        Assert.That(second.QDit!.FinalMse, Is.EqualTo(first.QDit!.FinalMse));
        second.Restore();
        var fake = Quantize(model, trajectories, Small with { SearchOnIntegerKernels = false });
        Assert.That(fake.QDit!.IntegerKernelCalls, Is.Zero);
        Assert.That(fake.QDit!.ReferenceMse, Is.EqualTo(first.QDit!.ReferenceMse).Within(1e-3 * first.QDit!.ReferenceMse), "kernels and fake quantization score alike");
        fake.Restore();

        string path = Path.Combine(Path.GetTempPath(), $"qdit-{Guid.NewGuid():N}.json");
        try
        {
            assignment.Save(path);
            var loaded = GroupSizeAssignment.Load(path);
            Assert.That(loaded.GroupSizes, Is.EqualTo(assignment.GroupSizes));
            var replay = new QuantizationBuilder().ForModel(model).Weights(4).Activations(4)
                .CalibrationData(Calibration(model, trajectories)).UseQDit(loaded, Small).Build().Apply();
            Assert.That(replay.QDit, Is.Null, "no search ran");
            foreach (var layer in ModelSurgery.FindQuantLinears(model))
                Assert.That(layer.ActiveConfig.Weight.GroupSize, Is.EqualTo(assignment[layer.LayerName]));
            using var replayed = trajectories.Sampler.Step(trajectories.Model, x, labels, 2);
            Assert.That(TestTensors.Identical(replayed, searched), "the same GPTQ versions: the same outputs");
            replay.Restore();
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void W4A4WithTheChosenGroupsRunsOnTheIntegerKernels()
    {
        using var model = new ToySearchModel(seed: 23);
        using var trajectories = model.Trajectories(Gains, samples: 4);
        var result = Quantize(model, trajectories, Small);
        foreach (var layer in ModelSurgery.FindQuantLinears(model))
            Assert.That(IntegerLinearKernel.WhyNotSupported(layer.ActiveConfig, layer.InFeatures), Is.Null, $"{layer.LayerName}: {layer.ActiveConfig.Weight}");

        using var noGrad = torch.no_grad();
        using var fake = trajectories.Sampler.Step(trajectories.Model, trajectories.Noise, trajectories.Labels, 2);
        using var kernel = new IntegerLinearKernel { Strict = true };
        Assert.That(IntegerLinearKernel.Attach(model, kernel), Is.EqualTo(2));
        using var integer = trajectories.Sampler.Step(trajectories.Model, trajectories.Noise, trajectories.Labels, 2);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2));
        Assert.That(kernel.FallbackCalls, Is.Zero);
        Assert.That(TestTensors.RelativeError(integer, fake), Is.LessThan(1e-4), "the kernels compute what fake quantization simulates");
        IntegerLinearKernel.Attach(model, null);
        result.Restore();
    }

    [Test]
    public void BadPlansAreRefusedNamingTheProblem()
    {
        using var model = new ToySearchModel(seed: 24);
        using var trajectories = model.Trajectories(Gains, samples: 2);
        var noGptq = Small with { Gptq = null };

        var staticActs = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(4)
            .Activations(4, dynamic: false).CalibrationData(Calibration(model, trajectories)).UseQDit(model, trajectories, noGptq).Build());
        Assert.That(staticActs!.Message, Does.Contain("dynamically"));

        var noWeights = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Activations(4)
            .UseQDit(model, trajectories, noGptq).Build());
        Assert.That(noWeights!.Message, Does.Contain("Weights(bits)"));

        // A reference of 32 does not divide fc1's K = 16.
        var reference = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(4, groupSize: 32).Activations(4)
            .UseQDit(model, trajectories, noGptq).Build());
        Assert.That(reference!.Message, Does.Contain("'fc1'").And.Contain("K = 16").And.Contain("reference group size 32"));

        Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().UseQDit(model, trajectories, Small with { Population = 0 }));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
    }

    [Test]
    public void AssignmentJsonIsValidatedAndMakesAStaticPerLayerPolicy()
    {
        var assignment = new GroupSizeAssignment(new Dictionary<string, int> { ["blocks.0.attn.qkv"] = 64, ["blocks.0.mlp.fc2"] = 0 });
        var back = GroupSizeAssignment.FromJson(assignment.ToJson());
        Assert.That(back.GroupSizes, Is.EqualTo(assignment.GroupSizes));
        Assert.That(assignment.Histogram(), Is.EqualTo("g64 ×1, per-channel ×1"));

        var policy = assignment.ToPolicy(QuantSpec.Weight(4), QuantSpec.Activation(8));
        Assert.That(policy.Resolve("blocks.0.attn.qkv", null), Is.EqualTo(new LayerQuantConfig(QuantSpec.Weight(4, 64), QuantSpec.Activation(8, 64))));
        Assert.That(policy.Resolve("blocks.0.mlp.fc2", null), Is.EqualTo(LayerQuantConfig.Create(4, 8)));
        Assert.That(policy.Resolve("elsewhere", null), Is.EqualTo(LayerQuantConfig.FullPrecision));
        var viaPolicyJson = TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(policy));
        Assert.That(viaPolicyJson.Resolve("blocks.0.attn.qkv", null).Weight.GroupSize, Is.EqualTo(64), "the policy itself saves as an ordinary static policy");

        var bad = assignment.ToJson().Replace("\"blocks.0.mlp.fc2\": 0", "\"blocks.0.mlp.fc2\": -8");
        var e = Assert.Throws<PolicyFormatException>(() => GroupSizeAssignment.FromJson(bad));
        Assert.That(e!.Message, Does.Contain("blocks.0.mlp.fc2").And.Contain("-8"));
        Assert.Throws<PolicyFormatException>(() => GroupSizeAssignment.FromJson("{\"format\": \"other\", \"version\": 1}"));
        Assert.Throws<PolicyFormatException>(() => GroupSizeAssignment.FromJson("not json"));
        Assert.Throws<KeyNotFoundException>(() => _ = assignment["nope"]);
    }
}
