using System.Text.Json.Nodes;
using AdaTSQ.Abstractions;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using static AdaTSQ.Tests.Policies.PolicyFixtures;

namespace AdaTSQ.Tests.Policies;

public class TimestepPolicyJsonTests
{
    private static string Valid(string kindFields) =>
        $$$"""{"format":"adatsq-timestep-policy","version":1,{{{kindFields}}},"configs":[{"weight":{"bits":4,"symmetric":true,"granularity":"PerChannel","group_size":0,"dynamic":true,"clip_ratio":1},"activation":{"bits":8,"symmetric":true,"granularity":"PerToken","group_size":0,"dynamic":true,"clip_ratio":1}}]}""";

    [Test]
    public void EveryKindRoundTripsWithTheSameConfigForEveryLayerAtEveryStep()
    {
        foreach (var policy in AllKinds())
        {
            var back = TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(policy));
            Assert.That(back.GetType(), Is.EqualTo(policy.GetType()));
            Assert.That(back.Name, Is.EqualTo(policy.Name));
            Assert.That(back.NamedLayers, Is.EquivalentTo(policy.NamedLayers));
            foreach (var layer in Layers.Append("not.named"))
            {
                Assert.That(back.Resolve(layer, null), Is.EqualTo(policy.Resolve(layer, null)), $"{policy.Name}, {layer}, no step");
                Assert.That(back.ConfigsFor(layer), Is.EquivalentTo(policy.ConfigsFor(layer)), $"{policy.Name}, {layer}");
                foreach (int steps in new[] { 6, 11 })
                    for (int k = 0; k < steps; k++)
                        Assert.That(back.Resolve(layer, Step(k, steps)), Is.EqualTo(policy.Resolve(layer, Step(k, steps))), $"{policy.Name}, {layer}, step {k} of {steps}");
            }
        }
    }

    [Test]
    public void EveryFieldOfASpecSurvives()
    {
        var read = (DynamicTimestepPolicy)TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(Dynamic()));
        var odd = read[0, "head"];
        Assert.That(odd, Is.EqualTo(Odd));
        Assert.That((odd.Weight.Bits, odd.Weight.Symmetric, odd.Weight.Granularity, odd.Weight.GroupSize, odd.Weight.ClipRatio),
            Is.EqualTo((3, false, QuantGranularity.PerGroup, 16, 0.9)));
        Assert.That((odd.Activation.Bits, odd.Activation.Symmetric, odd.Activation.Granularity, odd.Activation.Dynamic, odd.Activation.ClipRatio),
            Is.EqualTo((6, false, QuantGranularity.PerTensor, false, 0.75)));
        Assert.That(read.OtherLayers, Is.EqualTo(W6A8));
        var fp = TimestepPolicyJson.FromJson(TimestepPolicyJson.ToJson(new StaticTimestepPolicy(LayerQuantConfig.FullPrecision)));
        Assert.That(fp.Resolve("x", null), Is.EqualTo(LayerQuantConfig.FullPrecision));
    }

    [Test]
    public void ConfigsAreStoredOnceAndEachStepIsOneLine()
    {
        var layers = Enumerable.Range(0, 100).Select(i => $"blocks.{i / 4}.layer{i % 4}").ToList();
        var rows = Enumerable.Range(0, 50).Select(k => (IReadOnlyList<LayerQuantConfig>)layers.Select((_, l) => (k * l) % 3 == 0 ? W4A8 : (k * l) % 3 == 1 ? W8A8 : Odd).ToList()).ToList();
        string json = TimestepPolicyJson.ToJson(new DynamicTimestepPolicy(layers, rows));
        var node = JsonNode.Parse(json)!;
        Assert.That(node["configs"]!.AsArray(), Has.Count.EqualTo(4), "W4A8, W8A8, Odd and the other layers' full precision");
        Assert.That(json.Split('\n').Count(l => l.TrimStart().StartsWith('[') && l.Contains(',')), Is.EqualTo(50), "one line per step");
        Assert.That(json.Length, Is.LessThan(20_000), $"{json.Length} characters for 50 steps × 100 layers");
    }

    [Test]
    public void SaveWritesAtomicallyAndLoadReadsItBack()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"adatsq-policy-{Guid.NewGuid():N}");
        string path = Path.Combine(dir, "sub", "policy.json");
        try
        {
            TimestepPolicyJson.Save(Grouped(), path);
            TimestepPolicyJson.Save(Dynamic(50), path);              // replaces the previous file
            var back = (DynamicTimestepPolicy)TimestepPolicyJson.Load(path);
            Assert.That(back.StepCount, Is.EqualTo(50));
            Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Is.EqualTo(new[] { path }), "no temporary file is left behind");
            Assert.Throws<NotSupportedException>(() => TimestepPolicyJson.Save(new OtherPolicy(), path));
            Assert.That(TimestepPolicyJson.Load(path), Is.InstanceOf<DynamicTimestepPolicy>(), "a refused save leaves the file as it was");
            Assert.Throws<FileNotFoundException>(() => TimestepPolicyJson.Load(Path.Combine(dir, "missing.json")));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [TestCase("{", "not valid JSON")]
    [TestCase("[]", "not a JSON object")]
    [TestCase("""{"format":"other","version":1}""", "'format' is not")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":"1"}""", "version is missing or not an integer")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":9,"kind":"static","configs":[]}""", "format version 9 is not supported")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":1,"version":1,"kind":"static","configs":[]}""", "not valid JSON")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":1,"kind":"magic","configs":[]}""", "kind 'magic' is not one of static, time-grouped, dynamic")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":1,"kind":"static","configs":[],"default":0}""", "default = 0 is not an index of the 0 configs")]
    [TestCase("""{"format":"adatsq-timestep-policy","version":1,"kind":"static","default":0}""", "configs is missing or not an array")]
    public void MalformedJsonIsATypedErrorNamingTheProblem(string json, string expected)
    {
        var e = Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(json));
        Assert.That(e!.Message, Does.StartWith("policy JSON: ").And.Contain(expected));
        Assert.That(e, Is.InstanceOf<AdaTSQException>());
    }

    [TestCase("\"default\":0,\"overrides\":{\"head\":3}", "overrides['head'] = 3 is not an index of the 1 configs")]
    [TestCase("\"default\":0,\"overrides\":[0]", "overrides is not an object")]
    [TestCase("\"default\":\"0\"", "default is missing or not a config index")]
    [TestCase("\"default\":0.5", "default is missing or not a config index")]
    public void StaticFieldsAreChecked(string fields, string expected)
    {
        string json = Valid($"\"kind\":\"static\",{fields}");
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(json))!.Message, Does.Contain(expected));
    }

    [TestCase("\"groups\":[{\"first\":0,\"last\":3,\"default\":0},{\"first\":5,\"last\":9,\"default\":0}]", "steps 4…4 are in no group")]
    [TestCase("\"groups\":[{\"first\":0,\"last\":3,\"default\":0},{\"first\":3,\"last\":9,\"default\":0}]", "overlap")]
    [TestCase("\"groups\":[{\"first\":0,\"default\":0}]", "groups[0].last is missing or not an integer")]
    [TestCase("\"groups\":[{\"first\":0,\"last\":3,\"default\":0,\"overrides\":{\"x\":-1}}]", "groups[0].overrides['x'] = -1 is not an index")]
    public void TimeGroupedFieldsAreChecked(string fields, string expected)
    {
        string json = Valid($"\"kind\":\"time-grouped\",{fields}");
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(json))!.Message, Does.Contain(expected));
    }

    [Test]
    public void DynamicRowsMustFitTheLayers()
    {
        var node = JsonNode.Parse(TimestepPolicyJson.ToJson(Dynamic()))!;
        node["table"]![1]!.AsArray().RemoveAt(0);
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(node.ToJsonString()))!.Message,
            Does.Contain("table[1] (step 1) has 2 entries for 3 layers"));
        node = JsonNode.Parse(TimestepPolicyJson.ToJson(Dynamic()))!;
        node["table"]![2]![1] = 17;
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(node.ToJsonString()))!.Message,
            Does.Contain("table[2][1] (step 2, layer 'blocks.0.mlp.fc1') = 17 is not an index"));
        node = JsonNode.Parse(TimestepPolicyJson.ToJson(Dynamic()))!;
        node["table"] = new JsonArray();
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(node.ToJsonString()))!.Message, Does.Contain("at least one step"));
        node = JsonNode.Parse(TimestepPolicyJson.ToJson(Dynamic()))!;
        node["layers"]![2] = "blocks.0.attn.qkv";
        Assert.That(Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(node.ToJsonString()))!.Message, Does.Contain("'blocks.0.attn.qkv' is named twice"));
    }

    [TestCase("weight", "bits", "11", "weight bits = 11 is not supported")]
    [TestCase("weight", "granularity", "\"PerToken\"", "weight granularity PerToken is for activations")]
    [TestCase("weight", "granularity", "\"Diagonal\"", "granularity 'Diagonal' is not one of")]
    [TestCase("weight", "granularity", "\"1\"", "granularity '1' is not one of")]
    [TestCase("weight", "group_size", "0", "PerGroup needs a positive GroupSize")]
    [TestCase("weight", "clip_ratio", "0", "clip ratio 0 is outside (0, 1]")]
    [TestCase("weight", "clip_ratio", "\"high\"", "clip_ratio is missing or not a number")]
    [TestCase("weight", "symmetric", "1", "symmetric is missing or not true/false")]
    [TestCase("activation", "granularity", "\"PerToken\"", "static (calibrated) activation ranges need PerTensor")]
    public void BadSpecsAreNamedWithTheirPlace(string target, string field, string value, string expected)
    {
        var node = JsonNode.Parse(TimestepPolicyJson.ToJson(Dynamic()))!;
        int odd = node["configs"]!.AsArray().Select((c, i) => (c, i)).First(p => (int)p.c!["weight"]!["bits"]! == 3).i;
        node["configs"]![odd]![target]![field] = JsonNode.Parse(value);
        var e = Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.FromJson(node.ToJsonString()));
        Assert.That(e!.Message, Does.Contain($"configs[{odd}].{target}").And.Contain(expected));
    }

    [Test]
    public void AFileThatCannotBeReadIsNamed()
    {
        string file = Path.Combine(Path.GetTempPath(), $"adatsq-bad-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, Valid("\"kind\":\"static\",\"default\":1"));
        try
        {
            var e = Assert.Throws<PolicyFormatException>(() => TimestepPolicyJson.Load(file));
            Assert.That(e!.Message, Does.StartWith($"policy file '{file}': ").And.Contain("default = 1 is not an index"));
        }
        finally { File.Delete(file); }
    }

    [Test]
    public void OtherPolicyTypesAreNotSupportedAndTheMessageSaysWhichAre()
    {
        var e = Assert.Throws<NotSupportedException>(() => TimestepPolicyJson.ToJson(new OtherPolicy()));
        Assert.That(e!.Message, Does.Contain("'other'").And.Contain("static").And.Contain("time-grouped").And.Contain("dynamic"));
    }

    private sealed class OtherPolicy : ITimestepPolicy
    {
        public string Name => "other";
        public LayerQuantConfig Resolve(string layerName, TimestepInfo? step) => W8A8;
        public IReadOnlyCollection<LayerQuantConfig> ConfigsFor(string layerName) => [W8A8];
    }
}
