using System.Text.Json.Nodes;
using AdaTSQ.Abstractions;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using static AdaTSQ.Tests.Policies.PolicyFixtures;

namespace AdaTSQ.Tests.Policies;

/// <summary>Policies whose configs quantize activations per token × per group: JSON, tables and memory estimates.</summary>
public class PerGroupActivationPolicyTests
{
    private static readonly LayerQuantConfig W4A4g64 = new(QuantSpec.Weight(4, 64), QuantSpec.Activation(4, 64));
    private static readonly LayerQuantConfig W4A4 = LayerQuantConfig.Create(4, 4);
    private static readonly LayerQuantConfig W8A8g32 = new(QuantSpec.Weight(8), QuantSpec.Activation(8, 32, clipRatio: 0.95));

    [Test]
    public void PerGroupActivationSpecsRoundTripThroughJson()
    {
        var rows = Enumerable.Range(0, 6).Select(k => (IReadOnlyList<LayerQuantConfig>)Layers.Select((_, l) => ((k + l) % 3) switch { 0 => W4A4g64, 1 => W4A4, _ => W8A8g32 }).ToList()).ToList();
        ITimestepPolicy[] policies =
        [
            new StaticTimestepPolicy(W4A4g64, new Dictionary<string, LayerQuantConfig> { ["head"] = W8A8g32 }),
            new DynamicTimestepPolicy(Layers, rows, W4A4),
        ];
        foreach (var policy in policies)
        {
            string json = TimestepPolicyJson.ToJson(policy);
            var back = TimestepPolicyJson.FromJson(json);
            foreach (var layer in Layers)
                for (int k = 0; k < 6; k++)
                    Assert.That(back.Resolve(layer, Step(k, 6)), Is.EqualTo(policy.Resolve(layer, Step(k, 6))), $"{policy.Name}, {layer}, step {k}");
            Assert.That(back.ConfigsFor("head"), Is.EquivalentTo(policy.ConfigsFor("head")));
        }
        var read = TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(policies[0])).Resolve("head", null).Activation;
        Assert.That((read.Granularity, read.GroupSize, read.Dynamic, read.Bits, read.ClipRatio), Is.EqualTo((QuantGranularity.PerGroup, 32, true, 8, 0.95)));
        var node = JsonNode.Parse(TimestepPolicyJson.ToJson(policies[0]))!;
        Assert.That(node["configs"]!.AsArray().Select(c => (string?)c!["activation"]!["granularity"]), Has.Some.EqualTo("PerGroup"));
        Assert.That(W4A4g64, Is.Not.EqualTo(W4A4), "per-group and per-token activations are different configs");
    }

    [TestCase("\"granularity\":\"PerGroup\",\"group_size\":0,\"dynamic\":true", "PerGroup needs a positive GroupSize")]
    [TestCase("\"granularity\":\"PerGroup\",\"group_size\":64,\"dynamic\":false", "static (calibrated) activation ranges need PerTensor granularity, got PerGroup")]
    public void BadPerGroupActivationSpecsAreRefusedNamingTheirPlace(string fields, string expected)
    {
        string json = $$$"""{"format":"adatsq-timestep-policy","version":1,"kind":"static","default":0,"configs":[{"weight":{"bits":4,"symmetric":true,"granularity":"PerChannel","group_size":0,"dynamic":true,"clip_ratio":1},"activation":{"bits":4,"symmetric":true,{{{fields}}},"clip_ratio":1}}]}""";
        var e = Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(json));
        Assert.That(e!.Message, Does.Contain("activation").And.Contain(expected));
    }

    [Test]
    public void TheTableLegendTellsPerGroupActivationsApart()
    {
        var policy = new StaticTimestepPolicy(W4A4, new Dictionary<string, LayerQuantConfig> { ["head"] = W4A4g64 });
        var lines = policy.FormatTable(Layers, 4).Split(Environment.NewLine);
        Assert.That(lines, Has.Some.Match(@"W4A4 +weight int4 per-channel sym, activation int4 per-token sym$"));
        Assert.That(lines, Has.Some.Match(@"W4A4 +weight int4 g64 sym, activation int4 g64 sym$"));
    }

    [Test]
    public void ActivationGroupsCostNoWeightMemory()
    {
        var layers = new Dictionary<string, (long Out, long In)> { ["head"] = (64, 256), ["blocks.0.mlp.fc1"] = (128, 128) };
        long perToken = PolicyMemory.EstimateWeightBytes(new StaticTimestepPolicy(new LayerQuantConfig(QuantSpec.Weight(4, 64), QuantSpec.Activation(4))), layers);
        long perGroup = PolicyMemory.EstimateWeightBytes(new StaticTimestepPolicy(W4A4g64), layers);
        Assert.That(perGroup, Is.EqualTo(perToken));
    }
}
