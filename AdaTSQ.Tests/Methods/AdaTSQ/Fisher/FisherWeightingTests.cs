using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Fisher;

public class FisherWeightingTests
{
    private static readonly double[] Fisher = [0.5, 8.0, 2.0, 0.0, 32.0, 1.0];

    [TestCase(1.0, 0.1)]
    [TestCase(0.5, 0.0)]
    [TestCase(3.0, 0.25)]
    public void WeightsHaveMeanOneRespectTheFloorAndKeepTheOrder(double temperature, double floor)
    {
        var alpha = new FisherWeighting { Temperature = temperature, Floor = floor }.Normalize(Fisher);
        Assert.That(alpha.Average(), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(alpha.Min(), Is.GreaterThanOrEqualTo(floor - 1e-12));
        var byFisher = Enumerable.Range(0, Fisher.Length).OrderBy(i => Fisher[i]).ToArray();
        var byAlpha = Enumerable.Range(0, Fisher.Length).OrderBy(i => alpha[i]).ToArray();
        Assert.That(byAlpha, Is.EqualTo(byFisher));
        Assert.That(alpha[3], Is.EqualTo(floor).Within(1e-12), "zero Fisher gets exactly the floor");
    }

    [Test]
    public void TemperatureOneWithoutFloorIsProportionalToFisher()
    {
        var alpha = new FisherWeighting { Temperature = 1, Floor = 0 }.Normalize(Fisher);
        double mean = Fisher.Average();
        for (int i = 0; i < Fisher.Length; i++) Assert.That(alpha[i], Is.EqualTo(Fisher[i] / mean).Within(1e-12));
    }

    [Test]
    public void HighTemperatureFlattensAndLowSharpens()
    {
        double Spread(double tau) => new FisherWeighting { Temperature = tau, Floor = 0 }.Normalize([1, 2, 4, 8]).Max();
        Assert.That(Spread(0.5), Is.GreaterThan(Spread(1)));
        Assert.That(Spread(1), Is.GreaterThan(Spread(4)));
        Assert.That(Spread(1e6), Is.EqualTo(1.0).Within(1e-4));
    }

    [Test]
    public void AllZeroFisherGivesUniformWeightsAndBadValuesAreRefused()
    {
        Assert.That(new FisherWeighting().Normalize([0, 0, 0]), Is.EqualTo(new[] { 1.0, 1.0, 1.0 }));
        Assert.Throws<ArgumentException>(() => new FisherWeighting().Normalize([1, double.NaN]));
        Assert.Throws<ArgumentException>(() => new FisherWeighting().Normalize([1, -1]));
        Assert.That(new FisherWeighting { Temperature = 0, Floor = 1 }.FindProblems(), Has.Count.EqualTo(2));
    }

    [Test]
    public void SystematicDrawsFollowTheWeightsAndTheSeed()
    {
        double[] alpha = [0.1, 0.1, 2.0, 0.4, 1.4];
        var drawn = FisherCalibrator.DrawSteps(alpha, 10, seed: 3);
        Assert.That(drawn.Values.Sum(), Is.EqualTo(10));
        double total = alpha.Sum();
        for (int i = 0; i < alpha.Length; i++)
        {
            double expected = alpha[i] / total * 10;
            int got = drawn.GetValueOrDefault(i);
            Assert.That(got, Is.InRange((int)Math.Floor(expected), (int)Math.Ceiling(expected)), $"step {i}: expected ≈ {expected:F2} draws");
        }
        Assert.That(FisherCalibrator.DrawSteps(alpha, 10, seed: 3), Is.EquivalentTo(drawn));
        Assert.Throws<ArgumentException>(() => FisherCalibrator.DrawSteps([0, 0], 3, 0));
    }

    [Test]
    public void TemporalFisherRoundTripsThroughJson()
    {
        var steps = Enumerable.Range(0, 3).Select(k => new TimestepInfo(k, 3, 999 - 450 * k)).ToArray();
        var fisher = new TemporalFisher(steps, ["a", "b"], new double[,] { { 1, 2 }, { 3.5, 1e-7 }, { 0, 8 } }, 16);
        var back = TemporalFisher.FromJson(fisher.ToJson());
        Assert.That(back.Layers, Is.EqualTo(fisher.Layers));
        Assert.That(back.Steps, Is.EqualTo(fisher.Steps));
        Assert.That(back.StepTotals(), Is.EqualTo(fisher.StepTotals()));
        Assert.That(back.LayerValues("b"), Is.EqualTo(fisher.LayerValues("b")));
        Assert.That(back.SamplesPerStep, Is.EqualTo(16));
        Assert.That(Assert.Throws<CalibrationException>(() => TemporalFisher.FromJson("{\"steps\": []}"))!.Message, Does.Contain("'layers'"));
        Assert.Throws<CalibrationException>(() => TemporalFisher.FromJson("not json"));
    }
}
