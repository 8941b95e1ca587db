// snippet: policy
using AdaTSQ.Pipeline;
using AdaTSQ.Policies;
using AdaTSQ.Quantization;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void TimeGroupedPolicyMemoryAndJson()
    {
        using var dit = TinyDiT();

        // snippet: policy
        var policy = TimeGroupedTimestepPolicy.Even(50, [
            new StaticTimestepPolicy(LayerQuantConfig.Create(8, 8)),          // steps 0–24 (the noisiest): W8A8
            new StaticTimestepPolicy(LayerQuantConfig.Create(4, 8))]);        // steps 25–49: W4A8
        var shapes = ModelSurgery.FindLinears(dit).Where(l => l.Name.StartsWith("blocks.")).ToDictionary(l => l.Name, l => (l.Layer.out_features, l.Layer.in_features));
        long bytes = PolicyMemory.EstimateWeightBytes(policy, shapes);       // weight-version bytes, before quantizing

        var result = new QuantizationBuilder().ForModel(dit).Layers("blocks.*").Policy(policy).Build().Apply();
        Console.Write(result.FormatMemory());                                // per layer: versions kept and bytes (= the estimate)
        Console.Write(policy.FormatTable(shapes.Keys.ToList(), stepCount: 50));
        TimestepPolicyJson.Save(policy, "policy.json");                      // and TimestepPolicyJson.Load("policy.json")
        // end snippet

        Assert.That(result.QuantizedWeightBytes, Is.EqualTo(bytes));
        Assert.That(result.WeightVersions.All(v => v.Specs.Count == 2), Is.True, "every layer keeps its W8 and its W4 version");
        Assert.That(TimestepPolicyJson.ToJson(TimestepPolicyJson.Load("policy.json")), Is.EqualTo(TimestepPolicyJson.ToJson(policy)));
        result.Restore();
    }
}
