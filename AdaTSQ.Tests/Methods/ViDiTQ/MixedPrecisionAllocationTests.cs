using AdaTSQ.Methods.ViDiTQ;
using AdaTSQ.Quantization;
using TorchSharp;

namespace AdaTSQ.Tests.Methods.ViDiTQ;

/// <summary>The bit allocation of the metric-decoupled mixed precision: within the budget, filled, each metric served.</summary>
public class MixedPrecisionAllocationTests
{
    [Test]
    public void TheAllocationStaysWithinTheBudgetAndLeavesNoLayerThatWouldStillFit()
    {
        var rng = new Random(3);
        var parameters = Enumerable.Range(0, 20).Select(_ => (long)rng.Next(100, 5000)).ToList();
        var sensitivity = Enumerable.Range(0, 3).Select(_ => (IReadOnlyList<double>)parameters.Select(_ => rng.NextDouble() * 10).ToList()).ToList();
        foreach (double budget in new[] { 4.0, 4.3, 5.0, 6.5, 8.0 })
        {
            var promotions = MixedPrecisionAllocation.Allocate(sensitivity, parameters, 4, 8, budget);
            double average = MixedPrecisionAllocation.AverageWeightBits(promotions, parameters, 4, 8);
            Assert.That(average, Is.LessThanOrEqualTo(budget + 1e-9), $"budget {budget}");
            Assert.That(promotions.Select(p => p.Layer).Distinct().Count(), Is.EqualTo(promotions.Count));
            double room = (budget - average) * parameters.Sum();
            var left = Enumerable.Range(0, parameters.Count).Except(promotions.Select(p => p.Layer));
            Assert.That(left.All(l => 4.0 * parameters[l] > room + 1e-6), Is.True, $"budget {budget}: a layer that fits was left at 4 bits");
        }
        Assert.That(MixedPrecisionAllocation.Allocate(sensitivity, parameters, 4, 8, 4.0), Is.Empty);
        Assert.That(MixedPrecisionAllocation.Allocate(sensitivity, parameters, 4, 8, 8.0), Has.Count.EqualTo(parameters.Count));
    }

    [Test]
    public void EachMetricPromotesItsMostSensitiveLayerWhateverItsScale()
    {
        // Metric 0 is on a scale 1000× larger and ranks layers 0, 1, 2, …; metric 1 ranks layer 5 first.
        var loud = Enumerable.Range(0, 8).Select(l => 1000.0 * (8 - l)).ToList();
        var quiet = Enumerable.Range(0, 8).Select(l => l == 5 ? 1.0 : 0.01).ToList();
        var parameters = Enumerable.Repeat(100L, 8).ToList();
        // Room for two promotions (4 → 8 bits on 2 of 8 equal layers = 5 bits on average).
        var promotions = MixedPrecisionAllocation.Allocate([loud, quiet], parameters, 4, 8, 5.0);
        Assert.That(promotions, Is.EqualTo(new[] { new MixedPrecisionAllocation.Promotion(0, 0), new MixedPrecisionAllocation.Promotion(5, 1) }));
    }

    [Test]
    public void InconsistentInputsAndUnreachableBudgetsAreRefused()
    {
        IReadOnlyList<double> s = [1.0, 2.0];
        Assert.That(Assert.Throws<ArgumentException>(() => MixedPrecisionAllocation.Allocate([s], [10, 10], 4, 8, 3.5))!.Message, Does.Contain("below 4"));
        Assert.Throws<ArgumentException>(() => MixedPrecisionAllocation.Allocate([s], [10, 10, 10], 4, 8, 5));
        Assert.Throws<ArgumentException>(() => MixedPrecisionAllocation.Allocate([[1.0, double.NaN]], [10, 10], 4, 8, 5));
        Assert.Throws<ArgumentException>(() => MixedPrecisionAllocation.Allocate([s], [10, 10], 8, 8, 8));
        using var trajectories = new global::AdaTSQ.Tests.Methods.AdaTSQ.Search.ToySearchModel(1).Trajectories([1.0, 1.0]);
        var search = new MetricDecoupledMixedPrecision(trajectories, new ViDiTQMixedPrecisionOptions { AverageWeightBits = 3 });
        Assert.That(search.FindProblems(QuantSpec.Weight(4), QuantSpec.Activation(8)), Has.Some.Contains("below 4"));
        Assert.That(search.FindProblems(null, QuantSpec.Activation(8)), Has.Some.Contains("Weights(...)"));
        Assert.That(new ViDiTQMixedPrecisionOptions { Metrics = [FrequencyBandMseMetric.Detail, FrequencyBandMseMetric.Detail] }.FindProblems(), Has.Some.Contains("unique"));
    }

    [Test]
    public void TheFrequencyBandsSplitThePixelError()
    {
        using var a = TestTensors.Randn(1, 2, 1, 8, 8);
        using var b = TestTensors.Randn(2, 2, 1, 8, 8);
        double low = FrequencyBandMseMetric.Structure.Score(a, b), high = FrequencyBandMseMetric.Detail.Score(a, b);
        double total = (a - b).square().mean().item<float>();
        Assert.That(low + high, Is.EqualTo(total).Within(1e-4 * total), "the bands are orthogonal: their MSEs add up");
        Assert.That(FrequencyBandMseMetric.Structure.Score(a, a), Is.Zero);
        using var flat = torch.ones(2, 1, 8, 8);
        Assert.That(FrequencyBandMseMetric.Detail.Score(a + flat, a), Is.LessThan(1e-12), "a constant shift is all structure");
        Assert.That(FrequencyBandMseMetric.Structure.Score(a + flat, a), Is.EqualTo(1.0).Within(1e-5));
    }
}
