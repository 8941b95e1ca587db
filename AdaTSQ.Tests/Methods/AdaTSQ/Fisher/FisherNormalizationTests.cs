using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Quantization;
using TorchSharp;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Fisher;

/// <summary><see cref="FisherWeighting.Normalization"/>: Power (F), Log (log(1 + F/median)), Rank (rank/T).</summary>
public class FisherNormalizationTests
{
    private static readonly double[] Fisher = [0.5, 8.0, 2.0, 0.0, 32.0, 1.0];

    /// <summary>F = 10^k over 50 steps: the four-orders-and-more growth of the ε-loss Fisher, exaggerated.</summary>
    private static readonly double[] Exponential = Enumerable.Range(0, 50).Select(k => Math.Pow(10, k)).ToArray();

    private static double Ratio(double[] alpha) => alpha.Max() / alpha.Min();

    [Test]
    public void ThePaperSProportionalWeightsStayTheDefault() =>
        Assert.That(new FisherWeighting().Normalization, Is.EqualTo(FisherNormalization.Power));

    [Test]
    public void EveryModeHasMeanOneRespectsTheFloorKeepsTheOrderAndIgnoresTheScale(
        [Values] FisherNormalization normalization, [Values(0.5, 1.0, 3.0)] double temperature, [Values(0.0, 0.1, 0.25)] double floor)
    {
        var weighting = new FisherWeighting { Normalization = normalization, Temperature = temperature, Floor = floor };
        foreach (var fisher in new[] { Fisher, Exponential })
        {
            var alpha = weighting.Normalize(fisher);
            Assert.That(alpha.Average(), Is.EqualTo(1.0).Within(1e-12), "mean 1");
            Assert.That(alpha.Min(), Is.GreaterThanOrEqualTo(floor - 1e-12), "floor");
            for (int i = 0; i < fisher.Length; i++)
                for (int j = 0; j < fisher.Length; j++)
                    if (fisher[i] < fisher[j]) Assert.That(alpha[i], Is.LessThanOrEqualTo(alpha[j] + 1e-12), $"steps {i} < {j} keep their order");
            var scaled = weighting.Normalize(fisher.Select(f => f * 7e-5).ToArray());
            for (int i = 0; i < fisher.Length; i++) Assert.That(scaled[i], Is.EqualTo(alpha[i]).Within(1e-9), $"step {i}: the scale of F does not matter");
        }
    }

    [Test]
    public void OnAnExponentialFisherLogAndRankSpreadTheWeightFarLessThanPower()
    {
        var power = new FisherWeighting { Normalization = FisherNormalization.Power }.Normalize(Exponential);
        var log = new FisherWeighting { Normalization = FisherNormalization.Log }.Normalize(Exponential);
        var rank = new FisherWeighting { Normalization = FisherNormalization.Rank }.Normalize(Exponential);
        Assert.That(Ratio(power), Is.GreaterThan(400), "Power: the last step gets ≈ 40, the others the floor 0.1");
        Assert.That(Ratio(log), Is.LessThan(Ratio(power) / 10));
        Assert.That(Ratio(rank), Is.LessThan(Ratio(power) / 10));
        Assert.That(Ratio(rank), Is.LessThan(Ratio(log)));
        // How many steps sit within 10 % of the floor: nearly all for Power, half for Log, none for Rank.
        int AtFloor(double[] a) => a.Count(v => v < 0.11);
        Assert.That(AtFloor(power), Is.EqualTo(46));
        Assert.That(AtFloor(log), Is.EqualTo(24));
        Assert.That(AtFloor(rank), Is.Zero);
    }

    [Test]
    public void LogIsLogOnePlusTheRatioToTheMedianOfThePositiveValues()
    {
        // Known values: the positive F are 1, 2, 3, 10 (median 2.5), and a zero.
        double[] fisher = [2, 0, 10, 1, 3];
        double[] scores = fisher.Select(f => Math.Log(1 + f / 2.5)).ToArray();
        double mean = scores.Average();
        var alpha = new FisherWeighting { Normalization = FisherNormalization.Log, Floor = 0.2 }.Normalize(fisher);
        for (int i = 0; i < fisher.Length; i++) Assert.That(alpha[i], Is.EqualTo(0.2 + 0.8 * scores[i] / mean).Within(1e-12), $"step {i}");
        Assert.That(alpha[1], Is.EqualTo(0.2).Within(1e-15), "zero Fisher gets exactly the floor");
        // Far below the median log(1 + x) ≈ x: tiny ratios are kept, not rounded to zero.
        var tiny = new FisherWeighting { Normalization = FisherNormalization.Log, Floor = 0 }.Normalize([1e-30, 2e-30, 1, 1, 1]);
        Assert.That(tiny[1] / tiny[0], Is.EqualTo(2.0).Within(1e-9));
    }

    [Test]
    public void RankGivesEvenlySpacedWeightsAndTiesShareTheirMeanRank()
    {
        var alpha = new FisherWeighting { Normalization = FisherNormalization.Rank, Floor = 0 }.Normalize([5, 1e-9, 1e9, 5, 7]);
        // Ranks 2.5, 1, 5, 2.5, 4 (mean 3) → α = rank / 3.
        Assert.That(alpha, Is.EqualTo(new[] { 2.5 / 3, 1 / 3.0, 5 / 3.0, 2.5 / 3, 4 / 3.0 }).Within(1e-12));
        foreach (var mode in Enum.GetValues<FisherNormalization>())
        {
            Assert.That(new FisherWeighting { Normalization = mode }.Normalize([3, 3, 3]), Is.EqualTo(new[] { 1.0, 1.0, 1.0 }).Within(1e-12), $"{mode}: equal F");
            Assert.That(new FisherWeighting { Normalization = mode }.Normalize([0, 0]), Is.EqualTo(new[] { 1.0, 1.0 }), $"{mode}: zero F");
        }
    }

    [Test]
    public void AnUndefinedModeIsAProblem()
    {
        var bad = new FisherWeighting { Normalization = (FisherNormalization)7 };
        Assert.That(bad.FindProblems().Single(), Does.Contain("normalization 7"));
        Assert.Throws<ArgumentException>(() => bad.Normalize([1, 2]));
    }

    [Test]
    public void ImportanceSamplingDrawsByTheNormalizedWeights()
    {
        // Fisher 1, 10, 100, 10⁶ and four draws (floor 0): Power puts them all on the last step, Rank (α ∝ 1, 2, 3, 4) spreads them.
        using var model = torch.nn.Sequential(("fc", torch.nn.Linear(5, 2)));
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        var steps = Enumerable.Range(0, 4).Select(k => new TimestepInfo(k, 4, 999 - 250 * k)).ToArray();
        var fisher = new TemporalFisher(steps, ["fc"], new double[,] { { 1 }, { 10 }, { 100 }, { 1e6 } }, 1);
        var inputs = Enumerable.Range(0, 4).Select(k => TestTensors.Randn(k, 3, 5)).ToArray();
        IReadOnlyDictionary<int, int> Drawn(FisherNormalization mode)
        {
            var calibrator = new FisherCalibrator(fisher, new FisherCalibrationOptions
            {
                Weighting = new FisherWeighting { Normalization = mode, Floor = 0 }, Use = FisherUse.Sample, StepFraction = 1, Seed = 2,
            });
            using var result = calibrator.Calibrate([layer], new ModuleCalibrationSource(model, inputs, steps.Cast<TimestepInfo?>().ToList()), CalibrationRequirements.SecondMoments);
            return calibrator.DrawnSteps!;
        }
        Assert.That(Drawn(FisherNormalization.Power), Is.EquivalentTo(new Dictionary<int, int> { [3] = 4 }));
        var rank = Drawn(FisherNormalization.Rank);
        Assert.That(rank.Values.Sum(), Is.EqualTo(4));
        Assert.That(rank.GetValueOrDefault(3), Is.InRange(1, 2), "Rank: step 3 has 40 % of the weight");
        foreach (var t in inputs) t.Dispose();
    }
}
