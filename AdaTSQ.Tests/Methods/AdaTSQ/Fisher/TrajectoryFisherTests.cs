using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using AdaTSQ.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Fisher;

/// <summary>The temporal Fisher on the full-precision sampler's own trajectories (<see cref="FisherInputs.Trajectory"/>).</summary>
public class TrajectoryFisherTests
{
    /// <summary>
    /// ε̂ = g·W x + √(1−ᾱ_t)·x + 0.1·tanh(3x) (flattened, 16 values), W = 0: the sampler follows the fixed part (the
    /// optimal denoiser of N(0, I) data plus a nonlinear error, so the samples stay of order 1), and the loss gradient at
    /// W = 0 is (2/16)·g·(ε̂ − ε*)·xᵀ: the Fisher of a step is known from x_t and ε* alone.
    /// </summary>
    private sealed class OffsetModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
    {
        private readonly Dictionary<int, double> _noiseScale;
        private nn.Module<Tensor, Tensor> fc;

        public OffsetModel(GaussianDiffusion diffusion) : base(nameof(OffsetModel))
        {
            _noiseScale = Enumerable.Range(0, diffusion.NumTimesteps).ToDictionary(i => diffusion.TimestepMap[i], i => Math.Sqrt(1 - diffusion.AlphasCumprod[i]));
            fc = nn.Linear(16, 16, hasBias: false);
            using (torch.no_grad()) ((TorchSharp.Modules.Linear)fc).weight!.zero_();
            RegisterComponents();
        }

        public const double Gain = 1.5;

        public static Tensor Fixed(Tensor x, double noiseScale) => x * noiseScale + (x * 3).tanh() * 0.1;

        public double NoiseScale(double timestep) => _noiseScale[(int)Math.Round(timestep)];

        public override Tensor forward(Tensor x, Tensor t, Tensor y) =>
            (fc.call(x.reshape(x.shape[0], 16)) * Gain).reshape(x.shape) + Fixed(x, NoiseScale(t[0].item<float>()));
    }

    [Test]
    public void TheTargetIsTheNoiseThatLeadsFromTheTrajectorysEndPointToItsXt()
    {
        var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, "6"));
        var diffusion = sampler.Diffusion;
        using var model = new OffsetModel(diffusion);
        ModelSurgery.ReplaceLinears(model);
        var layer = ModelSurgery.FindQuantLinears(model).Single();
        const int n = 5;
        using var noise = TestTensors.Randn(7, n, 1, 4, 4);
        using var labels = torch.zeros(n, dtype: ScalarType.Int64);
        var sampling = new SamplingOptions();           // no guidance, no clipping
        Denoiser denoiser = (x, t, y) => model.call(x, t, y);
        // SamplesPerStep = n: every trajectory is used once per step, so the order drawn does not matter.
        var fisher = new TemporalFisherEstimator(denoiser, diffusion, sampler.SampleDdim, noise, labels, sampling,
            new TemporalFisherOptions { SamplesPerStep = n, Seed = 3 }).Estimate([layer]).LayerValues("fc");

        // Reference: the same trajectories, ε* = (x_t − √ᾱ·x0*)/√(1−ᾱ), F = mean_s ‖(2/16)·g·(ε̂_s − ε*_s)·x_sᵀ‖².
        using var trajectory = new Trajectory();
        using var end = sampler.SampleDdim(denoiser, noise, labels, sampling with { OnStep = trajectory.Record });
        var expected = new double[6];
        for (int k = 0; k < 6; k++)
        {
            using var scope = torch.NewDisposeScope();
            double ab = diffusion.AlphasCumprod[5 - k];
            var xt = trajectory.Steps[k].Input.to(ScalarType.Float64).reshape(n, 16);
            var target = (xt - end.to(ScalarType.Float64).reshape(n, 16) * Math.Sqrt(ab)) / Math.Sqrt(1 - ab);
            var residual = OffsetModel.Fixed(xt, Math.Sqrt(1 - ab)) - target;
            expected[k] = (residual.square().sum(1) * xt.square().sum(1)).mean().item<double>() * Math.Pow(2.0 / 16 * OffsetModel.Gain, 2);
        }
        for (int k = 0; k < 5; k++)
        {
            // The residual shrinks toward the end (x̂0 approaches x0*), but every step before the last has one.
            Assert.That(expected[k], Is.GreaterThan(1e-5 * expected.Max()), $"step {k} has a residual: {string.Join(", ", expected.Select(v => v.ToString("G3")))}");
            Assert.That(fisher[k], Is.EqualTo(expected[k]).Within(1e-4 * expected[k]), $"step {k}");
        }
        // The last DDIM step ends at its own x̂0: without guidance or clipping its residual is 0 (up to float32 rounding).
        Assert.That(expected[5], Is.LessThan(1e-3 * expected.Where((_, k) => k < 5).Min()), $"reference: {string.Join(", ", expected.Select(v => v.ToString("G3")))}");
        Assert.That(fisher[5], Is.LessThan(1e-3 * fisher.Where((_, k) => k < 5).Min()), $"estimate: {string.Join(", ", fisher.Select(v => v.ToString("G3")))}");
    }

    private static DiT TinyDiT() => DiTTests.RandomisedModel(new DiTConfig
    {
        InputSize = 8, PatchSize = 2, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 4, NumClasses = 4, LearnSigma = false,
    });

    [Test]
    public void OnATinyDiTTheEstimateIsFiniteNonNegativeSeededAndNotTheQSampleEstimate()
    {
        using var dit = TinyDiT();
        var weights = ModelSurgery.FindLinears(dit).Where(l => l.Name.StartsWith("blocks.", StringComparison.Ordinal))
            .Select(l => (l.Name, (Tensor)l.Layer.weight!)).ToList();
        Assert.That(weights, Has.Count.EqualTo(5));
        var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim5"));
        var sampling = new SamplingOptions { CfgScale = 2.0, NullClass = dit.NullClass, ClipDenoised = true, Seed = 1 };
        using var noise = TestTensors.Randn(8, 6, 1, 8, 8);
        using var labels = torch.tensor(new long[] { 0, 1, 2, 3, 0, 1 });
        Denoiser denoiser = (x, t, y) => dit.call(x, t, y);
        TemporalFisher Trajectory(long seed) => new TemporalFisherEstimator(denoiser, sampler.Diffusion, sampler.SampleDdim, noise, labels, sampling,
            new TemporalFisherOptions { SamplesPerStep = 4, Seed = seed }).Estimate(weights);

        var fisher = Trajectory(5);
        for (int k = 0; k < 5; k++)
            foreach (var (name, _) in weights)
                Assert.That(fisher[k, name], Is.GreaterThanOrEqualTo(0).And.Not.NaN.And.LessThan(double.PositiveInfinity), $"step {k}, {name}");
        Assert.That(fisher.StepTotals(), Has.All.GreaterThan(0), "with guidance and clipping every step, the last one too, has a residual");
        Assert.That(fisher.Steps.Select(s => s.Timestep), Is.EqualTo(Enumerable.Range(0, 5).Select(k => (double)sampler.Diffusion.TimestepMap[4 - k])));
        var again = Trajectory(5);
        var other = Trajectory(6);
        foreach (var (name, _) in weights)
        {
            Assert.That(again.LayerValues(name), Is.EqualTo(fisher.LayerValues(name)), $"{name}: same seed, same estimate");
            Assert.That(weights.Single(w => w.Name == name).Item2.requires_grad, Is.True, "requires_grad is restored");
        }
        Assert.That(other.StepTotals(), Is.Not.EqualTo(fisher.StepTotals()), "another seed draws other trajectories per step");

        // The q-sample estimate on the same trajectories' end points (same data, fresh noise) is another quantity.
        using var end = sampler.SampleDdim(denoiser, noise, labels, sampling);
        var qsample = new TemporalFisherEstimator(denoiser, sampler.Diffusion, end, labels, new TemporalFisherOptions { SamplesPerStep = 4, Seed = 5 }).Estimate(weights);
        var relative = fisher.StepTotals().Zip(qsample.StepTotals(), (a, b) => Math.Abs(a - b) / b).ToArray();
        Assert.That(relative.Max(), Is.GreaterThan(0.1), $"relative differences per step: {string.Join(", ", relative.Select(r => r.ToString("G3")))}");
    }

    [Test]
    public void ASamplerOfAnotherScheduleOrBadNoiseIsRefused()
    {
        using var dit = TinyDiT();
        var weights = ModelSurgery.FindLinears(dit).Take(2).Select(l => (l.Name, (Tensor)l.Layer.weight!)).ToList();
        var five = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim5"));
        var four = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim4"));
        using var noise = TestTensors.Randn(8, 2, 1, 8, 8);
        using var labels = torch.tensor(new long[] { 0, 1 });
        Denoiser denoiser = (x, t, y) => dit.call(x, t, y);
        var estimator = new TemporalFisherEstimator(denoiser, five.Diffusion, four.SampleDdim, noise, labels, new SamplingOptions());
        Assert.That(estimator.Inputs, Is.EqualTo(FisherInputs.Trajectory));
        Assert.That(Assert.Throws<CalibrationException>(() => estimator.Estimate(weights))!.Message, Does.Contain("4 steps").And.Contain("has 5"));
        using var labels3 = torch.tensor(new long[] { 0, 1, 2 });
        var e = Assert.Throws<CalibrationException>(() => new TemporalFisherEstimator(denoiser, five.Diffusion, five.SampleDdim, noise, labels3, new SamplingOptions()))!;
        Assert.That(e.Message, Does.Contain("labels have shape [3], expected [2]"));
        using var intNoise = torch.zeros(2, 1, 8, 8, dtype: ScalarType.Int64);
        Assert.That(Assert.Throws<CalibrationException>(() => new TemporalFisherEstimator(denoiser, five.Diffusion, five.SampleDdim, intNoise, labels, new SamplingOptions()))!.Message,
            Does.Contain("noise is Int64"));
    }
}
