using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

/// <summary>
/// The two sensitivity modes on the toy model's two layers (fc1 16→64, fc2 64→16: 1024 weights each), with
/// hand-made reports and Fisher values so that every number is known.
/// </summary>
public class LayerSensitivityTests
{
    private static readonly BitWidthSearchOptions Space = new() { WeightBits = [3, 8], ActivationSpec = QuantSpec.FullPrecision };

    /// <summary>Reports whose d_in · E / tr(H̄) is the same for both layers: <paramref name="normalized"/>[i] at bits[i].</summary>
    private static List<LayerReport> Reports(IReadOnlyList<QuantLinear> layers, double[] normalized, double[] traces)
    {
        var reports = new List<LayerReport>();
        for (int l = 0; l < layers.Count; l++)
            for (int i = 0; i < 2; i++)
            {
                var config = Space.ConfigFor(Space.WeightBits[i]);
                double e = normalized[i] * traces[l] / layers[l].InFeatures;
                reports.Add(new LayerReport(layers[l].LayerName, layers[l].InFeatures, layers[l].OutFeatures, config, 0, null, 0)
                {
                    OutputSquaredError = e,
                    InputSecondMomentTrace = traces[l],
                });
            }
        return reports;
    }

    private static TemporalFisher Fisher(IReadOnlyList<QuantLinear> layers, double[,] values) =>
        new(Enumerable.Range(0, values.GetLength(0)).Select(s => new TimestepInfo(s, values.GetLength(0), values.GetLength(0) - 1 - s)).ToList(),
            layers.Select(l => l.LayerName).ToList(), values, samplesPerStep: 1);

    private static double Score(LayerSensitivity s, int step, int layer, int bit) => s.StageWeights(step, step)[layer] * s.Error(layer, bit);

    [Test]
    public void CrossLayerModeRanksTheLayerWithTenTimesTheFisherAboveTheOtherAtEqualError()
    {
        using var model = new ToySearchModel(seed: 31);
        var layers = model.Quantize(Space);
        // Equal normalized errors, different Hessian scales (traces 2 and 5); fc2, the second layer (ties go to the
        // first), has 10× fc1's Fisher at both steps.
        var reports = Reports(layers, [10, 0.1], [2, 5]);
        var fisher = Fisher(layers, new double[,] { { 1, 10 }, { 3, 30 } });

        var cross = LayerSensitivity.FromLayers(layers, Space with { Sensitivity = SensitivityMode.CrossLayerFisher }, reports, fisher);
        Assert.That(cross.Error(0, 0), Is.EqualTo(cross.Error(1, 0)).Within(1e-12), "equal E");
        for (int step = 0; step < 2; step++)
            Assert.That(cross.StageWeights(step, step)[1] / cross.StageWeights(step, step)[0], Is.EqualTo(10).Within(1e-12));
        var picked = CandidateGenerator.Generate(cross, [1024, 1024], cross.StageWeights(0, 0), [5.5]).Single();
        Assert.That(picked.Bits, Is.EqualTo(new[] { 3, 8 }), "the 10× layer gets the higher width");

        // The original mode normalizes α per layer, so both layers (same Fisher shape over steps) weigh the same at
        // every step, and its E (not divided by the trace) makes fc1 look more sensitive: it upgrades fc1.
        var perLayer = LayerSensitivity.FromLayers(layers, Space, reports, fisher);
        Assert.That(perLayer.StageWeights(0, 0)[1], Is.EqualTo(perLayer.StageWeights(0, 0)[0]).Within(1e-12));
        Assert.That(CandidateGenerator.Generate(perLayer, [1024, 1024], perLayer.StageWeights(0, 0), [5.5]).Single().Bits, Is.EqualTo(new[] { 8, 3 }));
    }

    [Test]
    public void CrossLayerModeCountsTheFisherOnce()
    {
        using var model = new ToySearchModel(seed: 32);
        var layers = model.Quantize(Space);
        var mode = Space with { Sensitivity = SensitivityMode.CrossLayerFisher };
        var baseFisher = new double[,] { { 1, 2 }, { 4, 3 } };
        var baseline = LayerSensitivity.FromLayers(layers, mode, Reports(layers, [10, 0.1], [2, 5]), Fisher(layers, baseFisher));

        // fc2's Fisher doubles at every step, and so does everything its (unnormalized) Fisher-weighted Hessian gives:
        // E and tr(H̄) both ×2. Counted once, fc2's score relative to fc1's doubles; counted twice it would quadruple.
        var doubled = (double[,])baseFisher.Clone();
        for (int s = 0; s < 2; s++) doubled[s, 1] *= 2;
        var reports = Reports(layers, [10, 0.1], [2, 5]).Select(r => r.Name == layers[1].LayerName
            ? r with { OutputSquaredError = 2 * r.OutputSquaredError, InputSecondMomentTrace = 2 * r.InputSecondMomentTrace } : r).ToList();
        var scaled = LayerSensitivity.FromLayers(layers, mode, reports, Fisher(layers, doubled));
        for (int step = 0; step < 2; step++)
            for (int bit = 0; bit < 2; bit++)
            {
                double before = Score(baseline, step, 1, bit) / Score(baseline, step, 0, bit);
                double after = Score(scaled, step, 1, bit) / Score(scaled, step, 0, bit);
                Assert.That(after / before, Is.EqualTo(2).Within(1e-12), $"step {step}, bit index {bit}: linear in the Fisher");
            }

        // Doubling the Fisher at one step only doubles the score at that step, relative to the other layer.
        var oneStep = (double[,])baseFisher.Clone();
        oneStep[1, 1] *= 2;
        var stepScaled = LayerSensitivity.FromLayers(layers, mode, Reports(layers, [10, 0.1], [2, 5]), Fisher(layers, oneStep));
        double Ratio(LayerSensitivity s, int step) => Score(s, step, 1, 0) / Score(s, step, 0, 0);
        Assert.That(Ratio(stepScaled, 1) / Ratio(baseline, 1), Is.EqualTo(2).Within(1e-12));
        Assert.That(Ratio(stepScaled, 0) / Ratio(baseline, 0), Is.EqualTo(1).Within(1e-12));
    }

    [Test]
    public void CrossLayerWeightsAreTheFisherPerWeightNormalizedOnce()
    {
        var w = LayerSensitivity.CrossLayerWeights([[1.0, 3.0], [8.0, 0.0]], [1, 4]);
        // Per weight: [1, 3] and [2, 0], mean 1.5.
        Assert.That(w[0], Is.EqualTo(new[] { 1 / 1.5, 2 / 1.5 }).Within(1e-12));
        Assert.That(w[1], Is.EqualTo(new[] { 3 / 1.5, 0.0 }).Within(1e-12));
        Assert.That(w.SelectMany(x => x).Average(), Is.EqualTo(1).Within(1e-12));
        Assert.That(LayerSensitivity.CrossLayerWeights([[0.0, 0.0]], [5]), Is.EqualTo(new[] { new[] { 1.0 }, new[] { 1.0 } }));
        Assert.Throws<ArgumentException>(() => LayerSensitivity.CrossLayerWeights([[1.0, -1.0]], [5]));
        Assert.Throws<ArgumentException>(() => LayerSensitivity.CrossLayerWeights([[1.0, 1.0], [1.0]], [5, 5]));
        Assert.Throws<ArgumentException>(() => LayerSensitivity.CrossLayerWeights([[1.0]], [0]));
    }

    [Test]
    public void WithoutReportsOrTracesTheCrossLayerErrorIsTheWeightError()
    {
        using var model = new ToySearchModel(seed: 33);
        var layers = model.Quantize(Space);
        var mode = Space with { Sensitivity = SensitivityMode.CrossLayerFisher };
        var fromWeights = LayerSensitivity.FromLayers(layers, mode);
        var original = LayerSensitivity.FromLayers(layers, Space);
        var noTrace = Reports(layers, [10, 0.1], [2, 5]).Select(r => r with { InputSecondMomentTrace = null }).ToList();
        var fallback = LayerSensitivity.FromLayers(layers, mode, noTrace);
        for (int l = 0; l < 2; l++)
            for (int b = 0; b < 2; b++)
            {
                Assert.That(fromWeights.Error(l, b), Is.EqualTo(original.Error(l, b)), "‖W − Q‖², as the original mode without reports");
                Assert.That(fallback.Error(l, b), Is.EqualTo(original.Error(l, b)), "a report without a trace is not used");
            }
        Assert.That(fromWeights.Error(0, 0), Is.GreaterThan(fromWeights.Error(0, 1)));
        Assert.That(fromWeights.WeightedSteps, Is.Zero, "no Fisher: weight 1 everywhere");
    }

    [Test]
    public void AMissingLayerOrABadModeIsAClearError()
    {
        using var model = new ToySearchModel(seed: 34);
        var layers = model.Quantize(Space);
        var partial = new TemporalFisher([new TimestepInfo(0, 1, 0)], [layers[0].LayerName], new double[,] { { 1 } }, 1);
        var e = Assert.Throws<CalibrationException>(() => LayerSensitivity.FromLayers(layers, Space with { Sensitivity = SensitivityMode.CrossLayerFisher }, null, partial));
        Assert.That(e!.Message, Does.Contain(layers[1].LayerName));
        Assert.That((Space with { Sensitivity = (SensitivityMode)7 }).FindProblems(), Has.Some.Contains("sensitivity mode 7"));
        Assert.That((Space with { RefinementRounds = -1 }).FindProblems(), Has.Some.Contains("refinement rounds -1"));
        Assert.That((Space with { RefinementMovesPerRound = 0 }).FindProblems(), Has.Some.Contains("moves per round 0"));
        Assert.That((Space with { RefinementNeighbourhood = (RefinementNeighbourhood)9 }).FindProblems(), Has.Some.Contains("neighbourhood 9"));
        Assert.Throws<ArgumentException>(() => LayerSensitivity.FromLayers(layers, Space with { Sensitivity = (SensitivityMode)7 }));
    }
}
