using AdaTSQ.Abstractions;
using AdaTSQ.Models;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;

namespace AdaTSQ.Tests.Policies;

public class TimestepPolicyTests
{
    private static readonly LayerQuantConfig W4A8 = LayerQuantConfig.Create(4, 8);
    private static readonly LayerQuantConfig W8A8 = LayerQuantConfig.Create(8, 8);
    private static readonly LayerQuantConfig Odd = new(QuantSpec.Weight(3, groupSize: 16, symmetric: false, clipRatio: 0.9), QuantSpec.Activation(6, dynamic: false, symmetric: false));
    private static readonly string[] Layers = ["blocks.0.attn.qkv", "blocks.0.mlp.fc1", "head"];

    private static DynamicTimestepPolicy Dynamic(int steps = 6) => new(Layers,
        Enumerable.Range(0, steps).Select(k => (IReadOnlyList<LayerQuantConfig>)Layers.Select((_, l) => (k + l) % 3 == 0 ? W8A8 : (k + l) % 3 == 1 ? W4A8 : Odd).ToList()).ToList(),
        otherLayers: LayerQuantConfig.Create(6, 8), name: "test dynamic");

    private static TimeGroupedTimestepPolicy Grouped() => new([
        new TimestepGroup(0, 1, new StaticTimestepPolicy(W4A8)),
        new TimestepGroup(2, 4, new StaticTimestepPolicy(W8A8, new Dictionary<string, LayerQuantConfig> { ["head"] = Odd })),
        new TimestepGroup(5, 5, new StaticTimestepPolicy(Odd)),
    ]);

    private static IEnumerable<ITimestepPolicy> AllKinds() =>
        [new StaticTimestepPolicy(W4A8, new Dictionary<string, LayerQuantConfig> { ["head"] = Odd }), Grouped(), Dynamic()];

    [Test]
    public void JsonRoundTripKeepsEveryConfigOfEveryLayerAtEveryStep()
    {
        foreach (var policy in AllKinds())
        {
            var back = TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(policy));
            Assert.That(back.GetType(), Is.EqualTo(policy.GetType()));
            foreach (var layer in Layers.Append("not.named"))
            {
                Assert.That(back.Resolve(layer, null), Is.EqualTo(policy.Resolve(layer, null)), $"{policy.Name}, {layer}, no step");
                for (int k = 0; k < 6; k++)
                    Assert.That(back.Resolve(layer, new TimestepInfo(k, 6, 5 - k)), Is.EqualTo(policy.Resolve(layer, new TimestepInfo(k, 6, 5 - k))), $"{policy.Name}, {layer}, step {k}");
            }
            Assert.That(back.NamedLayers, Is.EquivalentTo(policy.NamedLayers));
        }
        // The odd spec (asymmetric, g16, clip 0.9; static asymmetric activations) survives field by field.
        var read = (DynamicTimestepPolicy)TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(Dynamic()));
        Assert.That(read[0, "head"], Is.EqualTo(Odd));
        Assert.That(read.OtherLayers, Is.EqualTo(LayerQuantConfig.Create(6, 8)));
    }

    [Test]
    public void SaveAndLoadGoThroughAFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"adatsq-policy-{Guid.NewGuid():N}.json");
        try
        {
            TimestepPolicyJson.Save(Dynamic(50), path);
            var back = (DynamicTimestepPolicy)TimestepPolicyJson.Load(path);
            Assert.That(back.StepCount, Is.EqualTo(50));
            Assert.That(new FileInfo(path).Length, Is.LessThan(8_000), "configs are stored once and referenced by index");
            Assert.That(Directory.GetFiles(Path.GetTempPath(), Path.GetFileName(path) + ".tmp-*"), Is.Empty);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase("{", "not valid JSON")]
    [TestCase("[]", "not a JSON object")]
    [TestCase("""{"format":"other","version":1}""", "'format'")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":9,"kind":"static","configs":[]}""", "version 9")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":1,"kind":"magic","configs":[]}""", "kind 'magic'")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":1,"kind":"static","configs":[],"default":0}""", "default = 0 is not an index")]
    public void MalformedJsonIsATypedErrorNamingTheProblem(string json, string expected)
    {
        var e = Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(json));
        Assert.That(e!.Message, Does.Contain(expected).And.StartWith("policy JSON"));
    }

    [Test]
    public void BadSpecsAndRowLengthsAreNamed()
    {
        string json = TimestepPolicyJson.ToJson(Dynamic());
        var badBits = json.Replace("\"bits\": 3", "\"bits\": 11", StringComparison.Ordinal);
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(badBits))!.Message, Does.Contain("bits = 11"));
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!;
        node["table"]![1]!.AsArray().RemoveAt(0);
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(node.ToJsonString()))!.Message, Does.Contain("table[1] has 2 entries for 3 layers"));
        string file = Path.Combine(Path.GetTempPath(), $"adatsq-bad-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, "{ nope");
        try { Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.Load(file))!.Message, Does.Contain(file)); }
        finally { File.Delete(file); }
    }

    [Test]
    public void TimeGroupsMustCoverTheStepsAndMapByPosition()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => new TimeGroupedTimestepPolicy([new(0, 1, new(W4A8)), new(3, 4, new(W8A8))]))!.Message, Does.Contain("steps 2…2"));
        Assert.That(Assert.Throws<ArgumentException>(() => new TimeGroupedTimestepPolicy([new(0, 2, new(W4A8)), new(2, 4, new(W8A8))]))!.Message, Does.Contain("overlaps"));
        var g = Grouped();
        Assert.That(g.StepCount, Is.EqualTo(6));
        Assert.That(g.Resolve("head", new TimestepInfo(3, 6, 0)), Is.EqualTo(Odd));
        Assert.That(g.Resolve("blocks.0.mlp.fc1", new TimestepInfo(3, 6, 0)), Is.EqualTo(W8A8));
        // A 11-step sampler: step 5 is the middle (progress 0.5 → policy step round(2.5) = 3, in the W8 group).
        Assert.That(g.Resolve("blocks.0.mlp.fc1", new TimestepInfo(5, 11, 0)), Is.EqualTo(W8A8));
        Assert.That(g.Resolve("blocks.0.mlp.fc1", null), Is.EqualTo(W8A8), "step-less calls use the most precise config");
        Assert.That(g.ConfigsFor("head"), Is.EquivalentTo(new[] { W4A8, Odd }));
        var even = TimeGroupedTimestepPolicy.Even(10, [new(W4A8), new(W8A8), new(Odd)]);
        Assert.That(even.Groups.Select(x => (x.FirstStep, x.LastStep)), Is.EqualTo(new[] { (0, 3), (4, 6), (7, 9) }));
    }

    [Test]
    public void DynamicPoliciesMapOtherStepCountsByPosition()
    {
        var d = Dynamic(50);
        Assert.That(d.MapStep(new TimestepInfo(0, 25, 0)), Is.EqualTo(0));
        Assert.That(d.MapStep(new TimestepInfo(24, 25, 0)), Is.EqualTo(49));
        Assert.That(d.MapStep(new TimestepInfo(12, 25, 0)), Is.EqualTo(25));
        Assert.That(d.Resolve("head", null), Is.EqualTo(W8A8), "step-less: the most precise config of the layer");
        Assert.That(d.Resolve("elsewhere", new TimestepInfo(3, 50, 0)), Is.EqualTo(LayerQuantConfig.Create(6, 8)));
        Assert.That(d.ConfigsFor("head"), Is.EquivalentTo(new[] { W4A8, W8A8, Odd }));
    }

    [Test]
    public void APolicyNamingALayerTheModelLacksIsRefusedBeforeSurgery()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, heads: 2, seed: 1);
        var policy = new StaticTimestepPolicy(W8A8, new Dictionary<string, LayerQuantConfig> { ["blocks.0.attn.qkvv"] = W4A8 });
        var e = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(model).Policy(policy).Build().Apply());
        Assert.That(e!.Message, Does.Contain("blocks.0.attn.qkvv").And.Contain("blocks.0.attn.qkv,"));
        Assert.That(ModelSurgery.FindQuantLinears(model), Is.Empty);
    }

    [Test]
    public void ATwoVersionPolicyKeepsBothVersionsAndSaysSo()
    {
        using var model = new TinyTransformer(width: 32, depth: 1, heads: 2, seed: 2);
        var names = ModelSurgery.FindLinears(model).Select(l => l.Name).ToList();
        var shapes = ModelSurgery.FindLinears(model).ToDictionary(l => l.Name, l => (l.Layer.out_features, l.Layer.in_features));
        var policy = TimeGroupedTimestepPolicy.Even(10, [new StaticTimestepPolicy(W4A8), new StaticTimestepPolicy(LayerQuantConfig.Create(8, 8))]);
        long estimate = PolicyMemory.EstimateWeightBytes(policy, shapes);
        var result = new QuantizationBuilder().ForModel(model).Policy(policy).Build().Apply();
        foreach (var layer in ModelSurgery.FindQuantLinears(model))
            Assert.That(layer.WeightVersions, Is.EquivalentTo(new[] { W4A8.Weight, W8A8.Weight }));
        Assert.That(result.QuantizedWeightBytes, Is.EqualTo(estimate), "the estimate made before quantizing is exact");
        Assert.That(result.WeightVersions.Select(v => v.Name), Is.EquivalentTo(names));
        string memory = result.FormatMemory();
        Assert.That(memory, Does.Contain("blocks.0.attn.qkv").And.Contain("2 versions").And.Contain($"{names.Count} of {names.Count} layers keep more than one version"));
        string table = policy.FormatTable(names, 10);
        Assert.That(table, Does.Contain("a = W4A8").And.Contain("b = W8A8").And.Contain("aaaaabbbbb"));
        result.Restore();
    }
}
