using AdaTSQ.Policies;
using AdaTSQ.Quantization;
using TorchSharp;
using static AdaTSQ.Tests.Policies.PolicyFixtures;

namespace AdaTSQ.Tests.Policies;

public class PolicyMemoryTests
{
    private static IEnumerable<TestCaseData> Specs()
    {
        yield return new TestCaseData(QuantSpec.Weight(8), 24L, 32L).SetName("int8 per-channel sym");
        yield return new TestCaseData(QuantSpec.Weight(4), 24L, 33L).SetName("int4 per-channel, odd row length (padded)");
        yield return new TestCaseData(QuantSpec.Weight(3, groupSize: 16, symmetric: false), 24L, 64L).SetName("int3 g16 asym (zero points)");
        yield return new TestCaseData(QuantSpec.Weight(6, symmetric: false), 5L, 7L).SetName("int6 per-channel asym");
        yield return new TestCaseData(QuantSpec.Weight(4) with { Granularity = QuantGranularity.PerTensor }, 8L, 9L).SetName("int4 per-tensor");
    }

    [TestCaseSource(nameof(Specs))]
    public void AVersionCostsWhatTheQuantizedTensorStores(QuantSpec spec, long rows, long cols)
    {
        using var w = torch.randn(rows, cols, generator: new torch.Generator(1));
        using var q = QuantizedTensor.Quantize(w, spec);
        Assert.That(PolicyMemory.WeightVersionBytes(spec, rows, cols), Is.EqualTo(q.StorageBytes));
    }

    [Test]
    public void FullPrecisionCostsNothingAndImpossibleShapesAreRefused()
    {
        Assert.That(PolicyMemory.WeightVersionBytes(QuantSpec.FullPrecision, 10, 10), Is.Zero);
        Assert.Throws<QuantSpecException>(() => PolicyMemory.WeightVersionBytes(QuantSpec.Weight(4, groupSize: 16), 10, 40));
        Assert.Throws<ArgumentOutOfRangeException>(() => PolicyMemory.WeightVersionBytes(QuantSpec.Weight(4), 0, 40));
    }

    [Test]
    public void TheEstimateCountsEveryDistinctWeightSpecOfEveryLayer()
    {
        var shapes = new Dictionary<string, (long Out, long In)> { ["blocks.0.attn.qkv"] = (96, 32), ["head"] = (32, 32), ["elsewhere"] = (8, 32) };
        long expected =
            PolicyMemory.WeightVersionBytes(W4A8.Weight, 96, 32) + PolicyMemory.WeightVersionBytes(W8A8.Weight, 96, 32) + PolicyMemory.WeightVersionBytes(Odd.Weight, 96, 32)
            + PolicyMemory.WeightVersionBytes(W4A8.Weight, 32, 32) + PolicyMemory.WeightVersionBytes(Odd.Weight, 32, 32)
            + PolicyMemory.WeightVersionBytes(W4A8.Weight, 8, 32) + PolicyMemory.WeightVersionBytes(W8A8.Weight, 8, 32) + PolicyMemory.WeightVersionBytes(Odd.Weight, 8, 32);
        Assert.That(PolicyMemory.EstimateWeightBytes(Grouped(), shapes), Is.EqualTo(expected));
        // Two configs with the same weight spec (W4A8 and W4A16) share one version.
        var sameWeight = TimeGroupedTimestepPolicy.Even(4, [new(W4A8), new(LayerQuantConfig.Create(4))]);
        Assert.That(PolicyMemory.EstimateWeightBytes(sameWeight, shapes), Is.EqualTo(shapes.Values.Sum(s => PolicyMemory.WeightVersionBytes(W4A8.Weight, s.Out, s.In))));
    }
}
