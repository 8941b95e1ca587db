using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Models;
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Pipeline;

/// <summary>A method defined outside the library plugs into the builder through its public extension points.</summary>
public class PipelinePluginTests
{
    /// <summary>Scales every input channel by 2 (weights by 1/2... as SmoothQuant does with s = 2) and records what it saw.</summary>
    private sealed class HalvingTransform : ILayerTransform
    {
        public List<string> Seen { get; } = [];
        public string Name => "halving";
        public CalibrationRequirements Requirements(bool rangesPerTimestepGroup) => CalibrationRequirements.None;
        public IReadOnlyList<string> FindProblems(bool hasCalibrationData) => hasCalibrationData ? [] : ["halving needs data."];
        public LayerStatistics? Apply(QuantLinear layer, IReadOnlyCollection<LayerQuantConfig> configs, LayerStatistics? statistics)
        {
            Seen.Add(layer.LayerName);
            using var s = torch.full(layer.InFeatures, 2f);
            layer.SetInputSmoothing(s);
            return statistics!.Smoothed(s);
        }
    }

    /// <summary>Picks W8 for every layer out of a W4/W8 search space.</summary>
    private sealed class PickEight : IPolicySearch
    {
        public string Name => "pick-eight";
        public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate) => [];
        public ITimestepPolicy SearchSpace(IReadOnlyList<string> layers, QuantSpec? w, QuantSpec? a) =>
            TimeGroupedTimestepPolicy.Even(2, [new StaticTimestepPolicy(LayerQuantConfig.Create(4)), new StaticTimestepPolicy(LayerQuantConfig.Create(8))]);
        public PolicySearchOutcome Run(PolicySearchContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
        {
            Assert.That(context.Layers.All(l => l.WeightVersions.Count == 2), "the search space was not quantized before the search");
            return new PolicySearchOutcome(new StaticTimestepPolicy(LayerQuantConfig.Create(8)), "report");
        }
    }

    [Test]
    public void ALayerTransformRunsOnEveryLayerBeforeItsWeightIsQuantized()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        model.eval();
        var batches = new List<Tensor> { TestTensors.Randn(1, 2, 4, 32) };
        var transform = new HalvingTransform();
        var result = new QuantizationBuilder().ForModel(model).Weights(8).Activations(8).CalibrationData(batches).AddLayerTransform(transform).Build().Apply();
        Assert.That(transform.Seen, Is.EquivalentTo(result.Layers.Select(l => l.Name)));
        foreach (var layer in ModelSurgery.FindQuantLinears(model))
        {
            Assert.That(layer.InputSmoothing, Is.Not.Null, layer.LayerName);
            // The quantized weight is that of W·diag(s): columns doubled.
            using var expected = layer.SmoothedWeight();
            using var q = layer.GetWeightVersion(QuantSpec.Weight(8)).Dequantize();
            Assert.That(TestTensors.RelativeError(q, expected), Is.LessThan(0.02), layer.LayerName);
        }
        batches[0].Dispose();
    }

    [Test]
    public void ATransformsProblemsAreReportedByBuild()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(8).AddLayerTransform(new HalvingTransform()).Build());
        Assert.That(e!.Message, Does.Contain("halving needs data."));
    }

    [Test]
    public void APolicySearchGetsTheQuantizedSearchSpaceAndItsPolicyAndReportAreTheResults()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        var result = new QuantizationBuilder().ForModel(model).SearchPolicy(new PickEight()).Build().Apply();
        Assert.That(result.SearchOutcome!.Report, Is.EqualTo("report"));
        Assert.That(result.Policy, Is.SameAs(result.SearchOutcome.Policy));
        foreach (var layer in ModelSurgery.FindQuantLinears(model))
            Assert.That(layer.WeightVersions.Select(s => s.Bits), Is.EqualTo(new[] { 8 }), $"{layer.LayerName} kept a version the policy does not use");
        Assert.That(result.Layers.All(l => l.Config.Weight.Bits == 8), Is.True);
    }

    /// <summary>Adds 1 to a named parameter of the model, records what it saw, and can be told to fail.</summary>
    private sealed class BumpStep(string name, string parameter, bool fail = false, List<string>? order = null) : IPostQuantizationStep, IModelChangingTransform
    {
        private Tensor? _original;
        private Tensor? _target;
        public ITimestepPolicy? PolicySeen { get; private set; }
        public bool LayersFollowedThePolicy { get; private set; }
        public string Name => name;
        public IReadOnlyList<string> FindProblems(QuantSpec? weightTemplate, QuantSpec? activationTemplate, bool hasCalibrationData) =>
            weightTemplate is { Bits: < 4 } ? [$"{name} needs at least 4 bits."] : [];
        public object? Run(PostQuantizationContext context, IProgress<QuantizationProgress>? progress, CancellationToken cancellationToken)
        {
            order?.Add(name);
            PolicySeen = context.Policy;
            LayersFollowedThePolicy = context.Layers.All(l => ReferenceEquals(l.Policy, context.Policy));
            _target = context.Model.get_parameter(parameter) ?? throw new ArgumentException(parameter);
            _original = _target.detach().clone();
            using (torch.no_grad()) _target.add_(1f);
            if (fail) throw new InvalidOperationException($"{name} failed on purpose");
            return $"{name} report";
        }
        public bool HasChangedModel => _original is not null;
        public void RevertModelChanges()
        {
            using (torch.no_grad()) _target!.copy_(_original!);
            _original!.Dispose();
            _original = null;
        }
    }

    private const string Norm = "blocks.0.norm1.weight";

    [Test]
    public void PostQuantizationStepsRunInOrderAfterTheSearchedPolicyIsSetAndTheirReportsAreKept()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        var order = new List<string>();
        var first = new BumpStep("first", Norm, order: order);
        var second = new BumpStep("second", Norm, order: order);
        var result = new QuantizationBuilder().ForModel(model).SearchPolicy(new PickEight())
            .AddPostQuantizationStep(first).AddPostQuantizationStep(second).Build().Apply();
        Assert.That(order, Is.EqualTo(new[] { "first", "second" }));
        Assert.That(first.PolicySeen, Is.SameAs(result.SearchOutcome!.Policy), "the step sees the searched policy, not the search space");
        Assert.That(first.LayersFollowedThePolicy, Is.True, "the layers follow the final policy when a step runs");
        Assert.That(result.PostQuantizationReports.Select(r => (r.Step, r.Report)), Is.EqualTo(new[] { ("first", (object?)"first report"), ("second", "second report") }));
        result.Restore();
    }

    [Test]
    public void RestoreAndAFailedStepPutBackWhatPostQuantizationStepsChanged()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        using var original = model.get_parameter(Norm)!.detach().clone();
        var result = new QuantizationBuilder().ForModel(model).Weights(8)
            .AddPostQuantizationStep(new BumpStep("a", Norm)).AddPostQuantizationStep(new BumpStep("b", Norm)).Build().Apply();
        Assert.That(TestTensors.Identical(model.get_parameter(Norm)!, original), Is.False, "the steps changed the parameter");
        result.Restore();
        Assert.That(TestTensors.Identical(model.get_parameter(Norm)!, original), Is.True, "Restore reverts both steps");

        var failing = new QuantizationBuilder().ForModel(model).Weights(8)
            .AddPostQuantizationStep(new BumpStep("a", Norm)).AddPostQuantizationStep(new BumpStep("b", Norm, fail: true)).Build();
        Assert.That(() => failing.Apply(), Throws.InvalidOperationException.With.Message.Contains("b failed on purpose"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "the original layers are back");
        Assert.That(TestTensors.Identical(model.get_parameter(Norm)!, original), Is.True, "a failed run reverts every step's change");
    }

    [Test]
    public void AStepsProblemsAreReportedByBuildAndASameNamedStepReplacesTheFirst()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, seed: 2);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Weights(3)
            .AddPostQuantizationStep(new BumpStep("a", Norm)).Build());
        Assert.That(e!.Message, Does.Contain("a needs at least 4 bits."));
        var order = new List<string>();
        var result = new QuantizationBuilder().ForModel(model).Weights(8)
            .AddPostQuantizationStep(new BumpStep("same", Norm, order: order)).AddPostQuantizationStep(new BumpStep("same", Norm, order: order)).Build().Apply();
        Assert.That(order, Has.Count.EqualTo(1));
        result.Restore();
    }
}
