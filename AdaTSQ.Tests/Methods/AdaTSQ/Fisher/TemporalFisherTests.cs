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
    public void MicroBatchOneIsTheExactEmpiricalFisherAndMicroBatchMSumsEachMicroBatchsGradientsFirst()
    {
        // With W = 0 the per-sample gradient is known in closed form: ℓ_s = mean_j (g·(W x_s)_j − ε_sj)² over
        // the 16 outputs, so ∇_W ℓ_s = −(g/8)·ε_s x_sᵀ. A micro-batch b of m samples back-propagates the mean
        // of its losses and is counted m²·‖∇‖² = ‖Σ_{s∈b} ∇ℓ_s‖², so for S samples per step
        //   F(MicroBatch = m) = (1/S) Σ_b ‖Σ_{s∈b} ∇ℓ_s‖²:
        // m = 1 is the exact empirical Fisher (1/S) Σ_s ‖∇ℓ_s‖², m = S is S·‖mean_s ∇ℓ_s‖², and they differ.
        // The reference reproduces the estimator's draws (x0 order and ε from the per-step seed) and checks
        // them against the inputs the model actually saw.
        var (diffusion, gains, model) = Toy();
        using var _m = model;
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        const int n = 5, perStep = 8;
        const long seed = 5;
        using var x0 = TestTensors.Randn(3, n, 1, 4, 4);
        using var labels = torch.zeros(n, dtype: ScalarType.Int64);
        var seen = new List<Tensor>();
        TemporalFisher Run(int micro) => new TemporalFisherEstimator((x, t, y) => { seen.Add(x.detach().clone().DetachFromDisposeScope()); return model.call(x, t, y); }, diffusion, x0, labels,
            new TemporalFisherOptions { SamplesPerStep = perStep, MicroBatch = micro, Seed = seed }).Estimate([layer]);

        var perSample = new double[6][];           // ‖∇ℓ_s‖² per step and sample
        var gradients = new Tensor[6];             // ∇ℓ_s, [S, 16·16], float64
        var inputs = new Tensor[6];                // x_t as drawn
        for (int k = 0; k < 6; k++)
        {
            int i = 5 - k;
            using var generator = new Generator((ulong)(seed * 1_000_003 + k));
            var index = torch.cat([torch.randperm(n, generator: generator), torch.randperm(n, generator: generator)])[..perStep];
            var x0s = x0.index_select(0, index);
            var eps = torch.randn(x0s.shape, generator: generator);
            inputs[k] = diffusion.QSample(x0s, torch.full(perStep, i, dtype: ScalarType.Int64), eps);
            var e = eps.reshape(perStep, 16).to(ScalarType.Float64);
            var xt = inputs[k].reshape(perStep, 16).to(ScalarType.Float64);
            gradients[k] = (e.unsqueeze(2) * xt.unsqueeze(1) * (-gains[k] / 8)).reshape(perStep, 256);
            perSample[k] = gradients[k].square().sum(1).data<double>().ToArray();
        }
        double Reference(int k, int micro)
        {
            double total = 0;
            for (int s = 0; s < perStep; s += micro)
                total += gradients[k][s..Math.Min(s + micro, perStep)].sum(dim: 0).square().sum().item<double>();
            return total / perStep;
        }

        var exact = Run(1).LayerValues("fc");
        using (var drawn = torch.cat(seen.ToArray()))
        using (var expectedInputs = torch.cat(inputs))
            Assert.That((drawn - expectedInputs).abs().max().item<float>(), Is.LessThan(1e-6f), "the reference reproduces the estimator's draws");
        foreach (var t in seen) t.Dispose();
        seen.Clear();
        Assert.That(Run(1).LayerValues("fc"), Is.EqualTo(exact), "same seed, same estimate");
        var whole = Run(perStep).LayerValues("fc");
        var uneven = Run(3).LayerValues("fc");        // micro-batches of 3, 3 and 2
        for (int k = 0; k < 6; k++)
        {
            double empirical = perSample[k].Sum() / perStep;
            Assert.That(exact[k], Is.EqualTo(empirical).Within(1e-5 * empirical), $"step {k}: MicroBatch 1 = mean of squared per-sample gradients");
            Assert.That(Reference(k, 1), Is.EqualTo(empirical).Within(1e-9 * empirical));
            double batchMean = Reference(k, perStep);
            Assert.That(whole[k], Is.EqualTo(batchMean).Within(1e-5 * batchMean), $"step {k}: MicroBatch S = S·‖mean gradient‖²");
            Assert.That(uneven[k], Is.EqualTo(Reference(k, 3)).Within(1e-5 * Reference(k, 3)), $"step {k}: MicroBatch 3");
            Assert.That(Math.Abs(batchMean - empirical), Is.GreaterThan(0.01 * empirical), $"step {k}: (the two estimates are different quantities)");
        }
        foreach (var t in seen) t.Dispose();
        foreach (var t in gradients.Concat(inputs)) t.Dispose();
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
