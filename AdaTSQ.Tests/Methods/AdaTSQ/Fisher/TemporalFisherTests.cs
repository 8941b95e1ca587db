using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Fisher;

public class TemporalFisherTests
{
    /// <summary>
    /// ε̂ = g(t) · W x (flattened), W = 0: the loss gradient is −(2/P)·g(t)·ε·x_tᵀ, so the Fisher of W at
    /// a step is g(t)² times a factor that barely depends on t (x_t has unit variance for N(0, 1) data).
    /// The sensitivity of each step is thus known by construction: the order of g².
    /// </summary>
    private sealed class GainModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
    {
        private readonly Dictionary<int, double> _gain;
        private nn.Module<Tensor, Tensor> fc;

        public GainModel(Dictionary<int, double> gainByTimestep) : base(nameof(GainModel))
        {
            _gain = gainByTimestep;
            fc = nn.Linear(16, 16, hasBias: false);
            using (torch.no_grad()) ((TorchSharp.Modules.Linear)fc).weight!.zero_();
            RegisterComponents();
        }

        public override Tensor forward(Tensor x, Tensor t, Tensor y)
        {
            double g = _gain[(int)Math.Round(t[0].item<float>())];
            return (fc.call(x.reshape(x.shape[0], 16)) * g).reshape(x.shape);
        }
    }

    private static (GaussianDiffusion Diffusion, double[] Gains, GainModel Model) Toy()
    {
        var diffusion = GaussianDiffusion.Create(1000, "6");
        double[] gains = [1.0, 3.0, 1.7, 0.5, 5.0, 2.3];          // per sampling step 0..5
        var byTimestep = Enumerable.Range(0, 6).ToDictionary(k => diffusion.TimestepMap[5 - k], k => gains[k]);
        return (diffusion, gains, new GainModel(byTimestep));
    }

    [Test]
    public void RanksTheStepsByTheirKnownSensitivity()
    {
        var (diffusion, gains, model) = Toy();
        using var _ = model;
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        using var x0 = TestTensors.Randn(1, 64, 1, 4, 4);
        using var labels = torch.zeros(64, dtype: ScalarType.Int64);
        var estimator = new TemporalFisherEstimator((x, t, y) => model.call(x, t, y), diffusion, x0, labels,
            new TemporalFisherOptions { SamplesPerStep = 48, Seed = 2 });
        var fisher = estimator.Estimate([layer]);

        var values = fisher.LayerValues("fc");
        var expectedOrder = Enumerable.Range(0, 6).OrderBy(k => gains[k]).ToArray();
        var actualOrder = Enumerable.Range(0, 6).OrderBy(k => values[k]).ToArray();
        Assert.That(actualOrder, Is.EqualTo(expectedOrder), $"Fisher per step: {string.Join(", ", values.Select(v => v.ToString("G3")))}");
        // Fisher scales with g²: the ratio of the extreme steps is close to (5/0.5)² = 100.
        Assert.That(values[4] / values[3], Is.InRange(60, 160));
        Assert.That(fisher.Steps.Select(s => s.Timestep), Is.EqualTo(Enumerable.Range(0, 6).Select(k => (double)diffusion.TimestepMap[5 - k])));
        Assert.That(layer.Weight.requires_grad, Is.True);
    }

    [Test]
    public void MicroBatchesEqualPerSampleGradientsWhenTheyAreExact()
    {
        // With W = 0 the gradients of samples add up: m‖mean g‖² differs from mean ‖g‖², so the two
        // estimates must differ by a bounded factor, and micro-batch 1 must be reproducible by seed.
        var (diffusion, _, model) = Toy();
        using var _m = model;
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        using var x0 = TestTensors.Randn(3, 32, 1, 4, 4);
        using var labels = torch.zeros(32, dtype: ScalarType.Int64);
        TemporalFisher Run(int micro) => new TemporalFisherEstimator((x, t, y) => model.call(x, t, y), diffusion, x0, labels,
            new TemporalFisherOptions { SamplesPerStep = 8, MicroBatch = micro, Seed = 5 }).Estimate([layer]);
        var a = Run(1).LayerValues("fc");
        var b = Run(1).LayerValues("fc");
        Assert.That(b, Is.EqualTo(a), "same seed, same estimate");
        var c = Run(4).LayerValues("fc");
        for (int k = 0; k < a.Length; k++) Assert.That(c[k] / a[k], Is.InRange(0.2, 5.0));
    }

    [Test]
    public void CleanImageSpaceScalesEachStepByTheSquaredNoiseToSignalRatio()
    {
        var (diffusion, _, model) = Toy();
        using var _m = model;
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        using var x0 = TestTensors.Randn(4, 16, 1, 4, 4);
        using var labels = torch.zeros(16, dtype: ScalarType.Int64);
        TemporalFisher Run(FisherLossSpace space) => new TemporalFisherEstimator((x, t, y) => model.call(x, t, y), diffusion, x0, labels,
            new TemporalFisherOptions { SamplesPerStep = 4, Seed = 1, LossSpace = space }).Estimate([layer]);
        var noise = Run(FisherLossSpace.Noise).LayerValues("fc");
        var clean = Run(FisherLossSpace.CleanImage).LayerValues("fc");
        for (int k = 0; k < 6; k++)
        {
            double a = diffusion.AlphasCumprod[5 - k];
            Assert.That(clean[k], Is.EqualTo(noise[k] * Math.Pow((1 - a) / a, 2)).Within(1e-9 * clean[k]));
        }
    }

    [Test]
    public void BadDataIsRefusedWithTheShapes()
    {
        var (diffusion, _, model) = Toy();
        using var _m = model;
        using var x0 = TestTensors.Randn(1, 4, 1, 4, 4);
        using var labels = torch.zeros(3, dtype: ScalarType.Int64);
        var e = Assert.Throws<CalibrationException>(() => new TemporalFisherEstimator((x, t, y) => model.call(x, t, y), diffusion, x0, labels))!;
        Assert.That(e.Message, Does.Contain("labels have shape [3], expected [4]"));
    }

    [Test]
    public void FisherCalibratorWeightsEachStepsSecondMomentByAlpha()
    {
        using var model = nn.Sequential(("fc", nn.Linear(5, 2)));
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        var steps = Enumerable.Range(0, 3).Select(k => new TimestepInfo(k, 3, 999 - 333 * k)).ToArray();
        var fisher = new TemporalFisher(steps, ["fc"], new double[,] { { 1 }, { 4 }, { 10 } }, 1);
        var inputs = Enumerable.Range(0, 3).Select(k => TestTensors.Randn(10 + k, 7, 5)).ToArray();
        var weighting = new FisherWeighting { Floor = 0.2 };
        var alpha = weighting.Normalize([1, 4, 10]);
        var calibrator = new FisherCalibrator(fisher, new FisherCalibrationOptions { Weighting = weighting });
        using var result = calibrator.Calibrate([layer], new ModuleCalibrationSource(model, inputs, steps.Cast<TimestepInfo?>().ToList()), CalibrationRequirements.SecondMoments);

        using var expected = torch.zeros(5, 5, dtype: ScalarType.Float64);
        for (int k = 0; k < 3; k++)
        {
            using var x = inputs[k].to(ScalarType.Float64);
            using var xtx = x.t().mm(x);
            expected.add_(xtx, alpha: alpha[k]);
        }
        var stats = result.For("fc")!;
        Assert.That((stats.SecondMoment! - expected).abs().max().item<double>(), Is.LessThan(1e-9));
        Assert.That(stats.SecondMomentWeight, Is.EqualTo(7 * alpha.Sum()).Within(1e-9));
        Assert.That(calibrator.StepWeights!["fc"], Is.EqualTo(alpha));

        // Importance sampling with a budget of one draw keeps only one step's data, unweighted.
        var sampler = new FisherCalibrator(fisher, new FisherCalibrationOptions { Weighting = weighting, Use = FisherUse.Sample, StepFraction = 0.34 });
        using var sampled = sampler.Calibrate([layer], new ModuleCalibrationSource(model, inputs, steps.Cast<TimestepInfo?>().ToList()), CalibrationRequirements.SecondMoments);
        Assert.That(sampler.DrawnSteps!.Values.Sum(), Is.EqualTo(1));
        int chosen = sampler.DrawnSteps.Keys.Single();
        using var xc = inputs[chosen].to(ScalarType.Float64);
        using var only = xc.t().mm(xc);
        Assert.That((sampled.For("fc")!.SecondMoment! - only).abs().max().item<double>(), Is.LessThan(1e-9));
        foreach (var t in inputs) t.Dispose();
    }

    [Test]
    public void FisherCalibratorRefusesStepsItHasNoWeightFor()
    {
        using var model = nn.Sequential(("fc", nn.Linear(5, 2)));
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        var fisher = new TemporalFisher([new TimestepInfo(0, 1, 999)], ["fc"], new double[,] { { 1 } }, 1);
        using var x = TestTensors.Randn(1, 3, 5);
        var e = Assert.Throws<CalibrationException>(() => new FisherCalibrator(fisher).Calibrate([layer],
            new ModuleCalibrationSource(model, [x], [new TimestepInfo(3, 10, 500)]), CalibrationRequirements.SecondMoments))!;
        Assert.That(e.Message, Does.Contain("cover 1 steps"));
        var other = new TemporalFisher([new TimestepInfo(0, 1, 999)], ["other"], new double[,] { { 1 } }, 1);
        var e2 = Assert.Throws<CalibrationException>(() => new FisherCalibrator(other).Calibrate([layer],
            new ModuleCalibrationSource(model, [x], [new TimestepInfo(0, 1, 999)]), CalibrationRequirements.SecondMoments))!;
        Assert.That(e2.Message, Does.Contain("'other'").Or.Contain("fc"));
    }
}
