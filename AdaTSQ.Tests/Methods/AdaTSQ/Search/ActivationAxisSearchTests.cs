using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Quantization;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

/// <summary>
/// The search on the activation axis (issue 16, item 1): activation bits per layer and step, one static weight version
/// per layer, so a dynamic policy costs no extra weight memory.
/// </summary>
public class ActivationAxisSearchTests
{
    private static readonly double[] Gains = [0.5, 0.5, 10.0, 0.5, 0.5];

    private static BitWidthSearchOptions Options(double budget) => new()
    {
        Axis = SearchAxis.ActivationBits,
        ActivationBits = [2, 8],
        WeightSpec = QuantSpec.Weight(8),
        ActivationSpec = QuantSpec.Activation(8),
        Budget = BitBudget.AverageActivationBits(budget),
        BeamWidth = 6,
    };

    [Test]
    public void TheKnownSensitiveStepGetsTheMostActivationBitsAtNoExtraWeightMemory()
    {
        using var model = new ToySearchModel(seed: 3);
        var options = Options(budget: 3.3);           // 5 steps: room for about one step at A8, the rest at A2
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var result = new BitWidthSearch(layers, trajectories, options).Run();

        var bits = result.Best.StepAverageBits;
        TestContext.Out.WriteLine($"best step activation bits: {string.Join(", ", bits.Select(b => b.ToString("F2")))}; MSE {result.Best.FinalMse:E3}");
        Assert.That(bits[2], Is.GreaterThan(new[] { 0, 1, 3, 4 }.Max(s => bits[s])), "the sensitive step 2 has strictly the most activation bits");
        Assert.That(result.Best.AverageActivationBits, Is.LessThanOrEqualTo(3.3 + 1e-9));
        Assert.That(result.Best.AverageWeightBits, Is.EqualTo(8), "the weights stay at their one version");
        var configs = layers.SelectMany(l => result.Best.Policy.ConfigsFor(l.LayerName)).ToList();
        Assert.That(configs.Select(c => c.Weight).Distinct(), Is.EqualTo(new[] { QuantSpec.Weight(8) }));
        Assert.That(configs.Select(c => c.ActivationBits).Distinct().Order(), Is.EqualTo(new[] { 2, 8 }), "the policy is dynamic in its activation bits");
        long oneVersion = layers.Sum(l => l.WeightVersionBytes(QuantSpec.Weight(8)));
        Assert.That(result.Best.WeightMemoryBytes, Is.EqualTo(oneVersion), "a dynamic activation policy keeps one weight version per layer");
        // The static reference at the same cost, the same activation bits at every step, is worse.
        var sameCost = result.StaticReferences.Where(s => s.AverageActivationBits <= result.Best.AverageActivationBits + 1e-9).MinBy(s => s.FinalMse)!;
        Assert.That(result.Best.FinalMse, Is.LessThan(sameCost.FinalMse));
        Assert.That(result.FormatSummary(), Does.Contain("avg A bits").And.Contain("activation bits 2/8"));
        Assert.That(result.StaticReferences.Select(p => p.Label), Has.Some.EqualTo("static 2.00 (A2×2)").And.Some.EqualTo("static 8.00 (A8×2)"));
    }

    [Test]
    public void ABitOperationBudgetHoldsOnTheActivationAxis()
    {
        using var model = new ToySearchModel(seed: 4, middle: true);
        var options = Options(8) with { ActivationBits = [4, 6, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var all8 = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.AverageActivationBits(8) }).Run();
        double bops = all8.StaticReferences.Single(s => s.AverageActivationBits == 8).AverageBitOperations * 0.7;
        var result = new BitWidthSearch(layers, trajectories, options with { Budget = BitBudget.AverageBitOperations(bops) }).Run();
        Assert.That(result.Best.AverageBitOperations, Is.LessThanOrEqualTo(bops * (1 + 1e-9)));
        Assert.That(result.Best.AverageActivationBits, Is.LessThan(8));
    }

    [Test]
    public void TheActivationSensitivityMeasuresEachLayersInputErrorAndRestoresTheLayers()
    {
        using var model = new ToySearchModel(seed: 5, middle: true);
        var options = Options(6) with { ActivationBits = [3, 4, 8] };
        var layers = model.Quantize(options);
        using var trajectories = model.Trajectories(Gains);
        var policies = layers.Select(l => l.Policy).ToArray();
        LayerSensitivity.FromActivationError(layers, options, trajectories);   // the layers cache their dequantized weights on first use
        long live = TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount;
        var sensitivity = LayerSensitivity.FromActivationError(layers, options, trajectories);
        Assert.That(TorchSharp.DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount, Is.EqualTo(live), "recorded inputs are freed");
        Assert.That(sensitivity.Bits, Is.EqualTo(new[] { 3, 4, 8 }));
        for (int l = 0; l < layers.Count; l++)
        {
            Assert.That(layers[l].Policy, Is.SameAs(policies[l]));
            Assert.That(layers[l].Observer, Is.Null);
            // Fewer bits, larger error: A3 well above A4 well above A8 (each step of bits ≈ 4× in squared error).
            Assert.That(sensitivity.Error(l, 0), Is.GreaterThan(2 * sensitivity.Error(l, 1)), layers[l].LayerName);
            Assert.That(sensitivity.Error(l, 1), Is.GreaterThan(sensitivity.Error(l, 2)), layers[l].LayerName);
        }
        Assert.Throws<ArgumentException>(() => LayerSensitivity.FromActivationError(layers, options with { Axis = SearchAxis.WeightBits }, trajectories));
    }

    [Test]
    public void BudgetsThatDoNotFitTheAxisAreRefused()
    {
        var onActivations = Options(6) with { Budget = BitBudget.AverageWeightBits(4) };
        Assert.That(onActivations.FindProblems(), Has.Some.Contains("does not vary on the activation axis"));
        Assert.That((Options(6) with { Budget = BitBudget.WeightMemory(1000) }).FindProblems(), Has.Some.Contains("does not vary on the activation axis"));
        Assert.That((Options(6) with { PairActivationBits = true }).FindProblems(), Has.Some.Contains("PairActivationBits"));
        Assert.That((Options(6) with { ActivationSpec = QuantSpec.FullPrecision }).FindProblems(), Has.Some.Contains("quantized activation spec"));
        var onWeights = new BitWidthSearchOptions { Budget = BitBudget.AverageActivationBits(6) };
        Assert.That(onWeights.FindProblems(), Has.Some.Contains("limits activation bits"));
        Assert.That(Options(6).FindProblems(), Is.Empty);
        Assert.That(Options(6).ConfigFor(2), Is.EqualTo(new LayerQuantConfig(QuantSpec.Weight(8), QuantSpec.Activation(2))));
        Assert.That(BitBudget.AverageActivationBits(5).ToString(), Is.EqualTo("avg activation bits ≤ 5"));
    }
}
