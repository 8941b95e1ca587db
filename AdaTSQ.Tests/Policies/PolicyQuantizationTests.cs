using AdaTSQ.Abstractions;
using AdaTSQ.Models;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using TorchSharp;
using static AdaTSQ.Tests.Policies.PolicyFixtures;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Tests.Policies;

/// <summary>Policies driving the quantization pipeline: layers they name, weight versions they make layers keep.</summary>
public class PolicyQuantizationTests
{
    [Test]
    public void APolicyNamingLayersTheModelLacksIsRefusedBeforeSurgery()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, heads: 2, seed: 1);
        var policy = TimeGroupedTimestepPolicy.Even(4, [
            new(W8A8, new Dictionary<string, LayerQuantConfig> { ["blocks.0.attn.qkvv"] = W4A8 }),
            new(W8A8, new Dictionary<string, LayerQuantConfig> { ["blocks.7.mlp.fc1"] = W4A8, ["blocks.0.mlp.fc1"] = W4A8 }),
        ]);
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Policy(policy).Build().Apply());
        var problem = e!.Problems.Single(p => p.Contains("policy", StringComparison.Ordinal));
        Assert.That(problem, Does.Contain("2 layer(s)").And.Contain("blocks.0.attn.qkvv").And.Contain("blocks.7.mlp.fc1"));
        Assert.That(problem, Does.Contain("the selected layers are: ").And.Contain("blocks.0.attn.qkv,"));
        Assert.That(problem[..problem.IndexOf("; the selected", StringComparison.Ordinal)], Does.Not.Contain("blocks.0.mlp.fc1"), "a layer the model has is not reported");
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty, "nothing was swapped");
    }

    [Test]
    public void ALayerThatExistsButIsNotSelectedIsReportedAsSuch()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, heads: 2, seed: 1);
        var policy = new StaticTimestepPolicy(W8A8, new Dictionary<string, LayerQuantConfig> { ["head"] = W4A8 });
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).ExcludeLayers("head").Policy(policy).Build().Apply());
        Assert.That(e!.Message, Does.Contain("head (in the model, but the selection is 'all layers except head')"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
    }

    [Test]
    public void ATwoVersionPolicyKeepsExactlyBothVersionsTheEstimateAndFormatMemorySaySo()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, heads: 2, seed: 2);
        var names = ModelSurgery.FindLinears(model).Select(l => l.Name).ToList();
        var shapes = ModelSurgery.FindLinears(model).ToDictionary(l => l.Name, l => (l.Layer.out_features, l.Layer.in_features));
        var policy = TimeGroupedTimestepPolicy.Even(10, [new StaticTimestepPolicy(W4A8), new StaticTimestepPolicy(W8A8)]);
        long estimate = PolicyMemory.EstimateWeightBytes(policy, shapes);

        var result = new QuantizationBuilder().ForModel(model).Policy(policy).Build().Apply();
        try
        {
            foreach (var layer in ModelSurgery.FindQuantLinears(model))
                Assert.That(layer.WeightVersions, Is.EquivalentTo(new[] { W4A8.Weight, W8A8.Weight }), layer.LayerName);
            Assert.That(result.QuantizedWeightBytes, Is.EqualTo(estimate), "the estimate made before quantizing is exact");
            Assert.That(result.WeightVersions.Select(v => v.Name), Is.EquivalentTo(names));
            Assert.That(result.WeightVersions.Select(v => v.Bytes), Is.EqualTo(ModelSurgery.FindQuantLinears(model).Select(l => l.QuantizedWeightBytes)));
            Assert.That(result.WeightVersions.Sum(v => v.Bytes), Is.EqualTo(result.QuantizedWeightBytes));
            var qkv = result.WeightVersions.Single(v => v.Name == "blocks.0.attn.qkv");
            long qkvBytes = PolicyMemory.WeightVersionBytes(W4A8.Weight, 96, 32) + PolicyMemory.WeightVersionBytes(W8A8.Weight, 96, 32);
            Assert.That(qkv.Bytes, Is.EqualTo(qkvBytes));

            string memory = result.FormatMemory();
            Assert.That(memory, Does.Contain($"blocks.0.attn.qkv   stores int4 per-channel sym + int8 per-channel sym: 2 versions, {qkvBytes:N0} bytes"));
            Assert.That(memory, Does.Contain($"in {2 * names.Count} weight versions of {names.Count} layers ({names.Count} of them store more than one version)"));

            // The versions are used: at a W4 step the model computes something else than at a W8 step, and W8 is closer to float.
            using var x = torch.randn([2, 5, 32], generator: new torch.Generator(3));
            using var w4 = Run(model, x, 0);
            using var w8 = Run(model, x, 9);
            result.Restore();
            using var fp = model.call(x);
            double e4 = (w4 - fp).abs().max().item<float>(), e8 = (w8 - fp).abs().max().item<float>();
            Assert.That(e8, Is.GreaterThan(0).And.LessThan(e4 / 4), $"max error W8 {e8:G3}, W4 {e4:G3}");
        }
        finally
        {
            result.Restore();
        }
    }

    [Test]
    public void FormatMemorySaysWhichLayersKeepNoQuantizedVersion()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, heads: 2, seed: 2);
        var policy = new StaticTimestepPolicy(W8A8, new Dictionary<string, LayerQuantConfig> { ["head"] = LayerQuantConfig.Create(16, 8) });
        var result = new QuantizationBuilder().ForModel(model).Policy(policy).Build().Apply();
        try
        {
            string memory = result.FormatMemory();
            Assert.That(memory, Does.Match(@"head +stores no quantized version \(full-precision weight at every step\), 0 bytes"));
            Assert.That(memory, Does.Match(@"blocks\.0\.mlp\.fc1 +stores int8 per-channel sym, [0-9,]+ bytes"));
            Assert.That(memory, Does.Contain("(0 of them store more than one version)"));
        }
        finally
        {
            result.Restore();
        }
    }

    private static torch.Tensor Run(TinyTransformer model, torch.Tensor x, int step)
    {
        using var _ = TimestepContext.Enter(Step(step, 10));
        using var noGrad = torch.no_grad();
        return model.call(x);
    }
}
