using AdaTSQ.Methods.AdaTSQ.Search;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

public class CandidateGeneratorTests
{
    private static LayerSensitivity Sensitivity(double[][]? stepWeights = null) => new(
        ["a", "b", "c"], [3, 4, 8],
        [
            [100, 40, 1],       // a: sensitive
            [10, 4, 0.1],
            [1, 0.4, 0.01],     // c: barely matters
        ], stepWeights);

    [Test]
    public void EachLevelStaysWithinItsAverageAndGivesTheSensitiveLayerMoreBits()
    {
        long[] n = [100, 100, 100];
        var candidates = CandidateGenerator.Generate(Sensitivity(), n, [1.0, 1.0, 1.0], [3, 4, 6, 8]);
        foreach (var c in candidates) Assert.That(c.AverageWeightBits, Is.LessThanOrEqualTo(c.Level + 1e-9));
        Assert.That(candidates[0].Bits, Is.EqualTo(new[] { 3, 3, 3 }));
        Assert.That(candidates[^1].Bits, Is.EqualTo(new[] { 8, 8, 8 }));
        Assert.That(candidates.Single(c => c.Level == 4).Bits, Is.EqualTo(new[] { 4, 4, 4 }), "a level at a bit-width is uniform");
        // Between 4 and 8 only those two mix: room for one layer at 8 (avg 5.33 ≤ 6), and it is the sensitive one.
        Assert.That(candidates.Single(c => c.Level == 6).Bits, Is.EqualTo(new[] { 8, 4, 4 }));
        Assert.That(candidates.Select(c => c.AverageWeightBits), Is.Ordered);
    }

    [Test]
    public void StepWeightsChangeWhichLayerIsUpgraded()
    {
        long[] n = [100, 100, 100];
        // At this stage layer c is weighted 10⁴× (e.g. its Fisher peaks here): it wins the upgrade.
        var candidates = CandidateGenerator.Generate(Sensitivity(), n, [1.0, 1.0, 1e4], [6]);
        Assert.That(candidates.Single().Bits, Is.EqualTo(new[] { 4, 4, 8 }));
    }

    [Test]
    public void IdenticalCandidatesAreMadeOnce()
    {
        var candidates = CandidateGenerator.Generate(Sensitivity(), [100, 100, 100], [1.0, 1.0, 1.0], [3, 3.1, 3.2, 2]);
        Assert.That(candidates, Has.Count.EqualTo(1));
    }
}
