using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Sampling;

public class GaussianDiffusionTests
{
    [Test]
    public void LinearScheduleMatchesTheOfficialFormulas()
    {
        var d = GaussianDiffusion.Create(1000);
        Assert.That(d.Betas[0], Is.EqualTo(1e-4).Within(1e-15));
        Assert.That(d.Betas[999], Is.EqualTo(0.02).Within(1e-15));
        Assert.That(d.Betas[500], Is.EqualTo(1e-4 + (0.02 - 1e-4) * 500 / 999).Within(1e-15));
        double prod = 1;
        for (int i = 0; i <= 10; i++) prod *= 1 - d.Betas[i];
        Assert.That(d.AlphasCumprod[10], Is.EqualTo(prod).Within(1e-15));
        Assert.That(d.AlphasCumprod[999], Is.EqualTo(4.0358e-5).Within(1e-8), "ᾱ_T of the linear schedule");
        Assert.That(d.PosteriorVariance[0], Is.Zero);
        Assert.That(d.PosteriorLogVarianceClipped[0], Is.EqualTo(Math.Log(d.PosteriorVariance[1])));
        Assert.That(d.PosteriorMeanCoef1[5] + d.PosteriorMeanCoef2[5] * 0, Is.EqualTo(d.Betas[5] * Math.Sqrt(d.AlphasCumprodPrev[5]) / (1 - d.AlphasCumprod[5])).Within(1e-15));
    }

    [Test]
    public void RespacingKeepsTheCumulativeProductsOfTheChosenSteps()
    {
        var full = GaussianDiffusion.Create(1000);
        var spaced = GaussianDiffusion.Create(1000, "250");
        Assert.That(spaced.NumTimesteps, Is.EqualTo(250));
        Assert.That(spaced.TimestepMap[0], Is.EqualTo(0));
        Assert.That(spaced.TimestepMap[^1], Is.EqualTo(999));
        for (int k = 0; k < 250; k += 37)
            Assert.That(spaced.AlphasCumprod[k], Is.EqualTo(full.AlphasCumprod[spaced.TimestepMap[k]]).Within(1e-12));
    }

    [Test]
    public void SpaceTimestepsMatchesTheOfficialExamples()
    {
        // From the official docstring: space_timesteps(300, [10, 15, 20]) takes 10, 15, 20 steps of three sections of 100.
        var s = GaussianDiffusion.SpaceTimesteps(300, "10,15,20");
        Assert.That(s, Has.Count.EqualTo(45));
        Assert.That(s.Count(v => v < 100), Is.EqualTo(10));
        Assert.That(s.Min, Is.EqualTo(0));
        Assert.That(s.Contains(99) && s.Contains(100) && s.Contains(299), Is.True);
        Assert.That(GaussianDiffusion.SpaceTimesteps(1000, "ddim50"), Is.EqualTo(Enumerable.Range(0, 50).Select(i => i * 20)));
        Assert.That(GaussianDiffusion.SpaceTimesteps(1000, "50").Take(4), Is.EqualTo(new[] { 0, 20, 41, 61 }));
    }

    [Test]
    public void QSampleMixesDataAndNoiseByTheSchedule()
    {
        var d = GaussianDiffusion.Create(1000);
        using var x0 = torch.ones(2, 1, 2, 2);
        using var noise = torch.full(2, 1, 2, 2, 2f);
        using var t = torch.tensor(new long[] { 0, 999 });
        using var xt = d.QSample(x0, t, noise);
        Assert.That(xt[0, 0, 0, 0].item<float>(), Is.EqualTo((float)(Math.Sqrt(d.AlphasCumprod[0]) + 2 * Math.Sqrt(1 - d.AlphasCumprod[0]))).Within(1e-6f));
        Assert.That(xt[1, 0, 1, 1].item<float>(), Is.EqualTo((float)(Math.Sqrt(d.AlphasCumprod[999]) + 2 * Math.Sqrt(1 - d.AlphasCumprod[999]))).Within(1e-6f));
    }

    /// <summary>β_i of the official linear 1000-step schedule and ᾱ_i, written out independently of the class.</summary>
    private static (double Beta, double AlphaBar, double AlphaBarPrev) Schedule(int i)
    {
        double Beta(int k) => 1e-4 + (0.02 - 1e-4) * k / 999;
        double prev = 1;
        for (int k = 0; k < i; k++) prev *= 1 - Beta(k);
        return (Beta(i), prev * (1 - Beta(i)), prev);
    }

    private static float At(Tensor t, params long[] index) => t[index.Select(i => TensorIndex.Single(i)).ToArray()].item<float>();

    [Test]
    public void PMeanVarianceMatchesHandComputedValues()
    {
        // x_t and ε at two pixels, step 10 of the unspaced schedule.
        using var x = torch.tensor(new float[] { 1.3f, -0.9f }).reshape(1, 1, 1, 2);
        using var eps = torch.tensor(new float[] { 0.3f, -2.0f }).reshape(1, 1, 1, 2);
        var (beta, ab, abPrev) = Schedule(10);
        double[] xs = [1.3, -0.9], es = [0.3, -2.0];
        double X0(int j) => xs[j] / Math.Sqrt(ab) - Math.Sqrt(1 / ab - 1) * es[j];
        double Mean(double x0, int j) => beta * Math.Sqrt(abPrev) / (1 - ab) * x0 + (1 - abPrev) * Math.Sqrt(1 - beta) / (1 - ab) * xs[j];
        double posterior = beta * (1 - abPrev) / (1 - ab);

        var large = GaussianDiffusion.Create(1000);
        using (var p = large.PMeanVariance(eps, x, 10, clipDenoised: false))
        {
            for (int j = 0; j < 2; j++)
            {
                Assert.That(At(p.PredXStart, 0, 0, 0, j), Is.EqualTo(X0(j)).Within(2e-6 * Math.Abs(X0(j))));
                Assert.That(At(p.Mean, 0, 0, 0, j), Is.EqualTo(Mean(X0(j), j)).Within(2e-6 * Math.Abs(Mean(X0(j), j))));
                Assert.That(At(p.Variance, 0, 0, 0, j), Is.EqualTo(beta).Within(1e-6 * beta), "FixedLarge: σ² = β_t");
                Assert.That(At(p.LogVariance, 0, 0, 0, j), Is.EqualTo(Math.Log(beta)).Within(1e-6));
            }
            Assert.That(p.Mean.shape, Is.EqualTo(x.shape));
            Assert.That(p.Variance.shape, Is.EqualTo(x.shape));
        }
        // Clipping: x̂0 = 1.28…, −0.79… → 1, −0.79…; the mean is formed from the clipped x̂0.
        Assert.That(X0(0), Is.GreaterThan(1));
        using (var p = large.PMeanVariance(eps, x, 10, clipDenoised: true))
        {
            Assert.That(At(p.PredXStart, 0, 0, 0, 0), Is.EqualTo(1f));
            Assert.That(At(p.Mean, 0, 0, 0, 0), Is.EqualTo(Mean(1.0, 0)).Within(2e-6));
            Assert.That(At(p.PredXStart, 0, 0, 0, 1), Is.EqualTo(X0(1)).Within(2e-6));
        }
        // FixedLarge at t = 0 takes β̃_1 (the official "better decoder log likelihood" choice).
        var (beta1, ab1, _) = Schedule(1);
        double posterior1 = beta1 * Schedule(0).Beta / (1 - ab1);             // β̃_1 = β_1(1 − ᾱ_0)/(1 − ᾱ_1), 1 − ᾱ_0 = β_0
        using (var p = large.PMeanVariance(eps, x, 0, clipDenoised: false))
            Assert.That(At(p.LogVariance, 0, 0, 0, 0), Is.EqualTo(Math.Log(posterior1)).Within(1e-6));

        var small = GaussianDiffusion.Create(1000, varianceType: VarianceType.FixedSmall);
        using (var p = small.PMeanVariance(eps, x, 10, clipDenoised: false))
        {
            Assert.That(At(p.Variance, 0, 0, 0, 1), Is.EqualTo(posterior).Within(1e-6 * posterior), "FixedSmall: σ² = β̃_t");
            Assert.That(At(p.LogVariance, 0, 0, 0, 1), Is.EqualTo(Math.Log(posterior)).Within(1e-6));
        }

        // LearnedRange: v = −1 → log β̃_t, v = +1 → log β_t, v = 0.5 → ¾·log β_t + ¼·log β̃_t; ε is the first C channels.
        var learned = GaussianDiffusion.Create(1000, varianceType: VarianceType.LearnedRange);
        using var v = torch.tensor(new float[] { -1f, 0.5f }).reshape(1, 1, 1, 2);
        using var output = torch.cat([eps, v], dim: 1);
        using (var p = learned.PMeanVariance(output, x, 10, clipDenoised: false))
        {
            Assert.That(At(p.LogVariance, 0, 0, 0, 0), Is.EqualTo(Math.Log(posterior)).Within(1e-5));
            Assert.That(At(p.LogVariance, 0, 0, 0, 1), Is.EqualTo(0.75 * Math.Log(beta) + 0.25 * Math.Log(posterior)).Within(1e-5));
            Assert.That(At(p.Variance, 0, 0, 0, 1), Is.EqualTo(Math.Exp(0.75 * Math.Log(beta) + 0.25 * Math.Log(posterior))).Within(1e-5 * beta));
            Assert.That(At(p.PredXStart, 0, 0, 0, 1), Is.EqualTo(X0(1)).Within(2e-6), "the variance channels are not ε");
        }
    }

    [Test]
    public void TheDdpmAndDdimStepsAreBuiltFromPMeanVariance()
    {
        var d = GaussianDiffusion.Create(1000, "4");
        Denoiser model = (x, t, _) => x * 0.4f + x.cos() * 0.2f;
        using var noise = TestTensors.Randn(8, 2, 1, 3, 3);
        using var y = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        using var trajectory = new Trajectory();
        using var _ = new DiffusionSampler(d).SampleDdpm(model, noise, y, new SamplingOptions { Seed = 21, ClipDenoised = true, OnStep = trajectory.Record });
        // Step 0 (spaced index 3): mean + σ·z with the first draw of the seed's generator.
        using (var p = d.PMeanVariance(trajectory.Steps[0].Output, noise, 3, clipDenoised: true))
        using (var z = torch.randn(noise.shape, generator: new Generator(21)))
        using (var expected = p.Mean + z * (p.LogVariance * 0.5).exp())
            Assert.That((trajectory.Steps[0].Next - expected).abs().max().item<float>(), Is.LessThan(1e-6f));
        // The last step (t = 0) adds no noise: the sample is the mean.
        var last = trajectory.Steps[^1];
        using (var p = d.PMeanVariance(last.Output, last.Input, 0, clipDenoised: true))
            Assert.That(TestTensors.Identical(last.Next, p.Mean), Is.True);

        // DDIM (η = 0): √ᾱ_prev·x̂0 + √(1 − ᾱ_prev)·ε̂, with ε̂ re-derived from the (clipped) x̂0.
        using var ddim = new Trajectory();
        using var __ = new DiffusionSampler(d).SampleDdim(model, noise, y, new SamplingOptions { ClipDenoised = true, OnStep = ddim.Record });
        var s = ddim.Steps[1];
        using (var p = d.PMeanVariance(s.Output, s.Input, 2, clipDenoised: true))
        using (var e = d.PredictEps(s.Input, 2, p.PredXStart))
        using (var expected = p.PredXStart * Math.Sqrt(d.AlphasCumprodPrev[2]) + e * Math.Sqrt(1 - d.AlphasCumprodPrev[2]))
            Assert.That((s.Next - expected).abs().max().item<float>(), Is.LessThan(1e-6f));
    }

    [Test]
    public void ForGivesLearnSigmaModelsTheirLearnedVariance()
    {
        var official = GaussianDiffusion.For(DiTConfig.Named("DiT-XL/2"), "250");
        Assert.That(official.VarianceType, Is.EqualTo(VarianceType.LearnedRange), "official create_diffusion: learn_sigma=True → LEARNED_RANGE");
        Assert.That(official.NumTimesteps, Is.EqualTo(250));
        var mnist = GaussianDiffusion.For(DiTConfig.Mnist, "ddim25");
        Assert.That(mnist.VarianceType, Is.EqualTo(VarianceType.FixedLarge));
        Assert.That(mnist.AlphasCumprod, Is.EqualTo(GaussianDiffusion.Create(1000, "ddim25").AlphasCumprod));
        Assert.That(mnist.TimestepMap, Is.EqualTo(GaussianDiffusion.Create(1000, "ddim25").TimestepMap));
    }

    [Test]
    public void ALearnSigmaModelOnAFixedVarianceIsATypedError()
    {
        // ε in 4 channels and variance values in 4 more: what a learn-sigma DiT returns.
        Denoiser learnSigma = (x, t, _) => torch.cat([x * 0.5f, torch.zeros_like(x)], dim: 1);
        Denoiser epsOnly = (x, t, _) => x * 0.5f;
        using var noise = TestTensors.Randn(9, 2, 4, 2, 2);
        using var y = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        var fixedLarge = new DiffusionSampler(GaussianDiffusion.Create(1000, "5"));
        var e = Assert.Throws<ModelOutputMismatchException>(() => fixedLarge.SampleDdpm(learnSigma, noise, y))!;
        Assert.That(e.VarianceType, Is.EqualTo(VarianceType.FixedLarge));
        Assert.That((e.SampleChannels, e.OutputChannels), Is.EqualTo((4L, 8L)));
        Assert.That(e.Message, Does.Contain("FixedLarge").And.Contain("8 channels").And.Contain("4-channel").And.Contain("GaussianDiffusion.For"));
        Assert.Throws<ModelOutputMismatchException>(() => fixedLarge.SampleDdim(learnSigma, noise, y), "DDIM too (the official p_mean_variance asserts)");
        Assert.Throws<ModelOutputMismatchException>(() => new DiffusionSampler(GaussianDiffusion.Create(1000, "5", VarianceType.FixedSmall)).SampleDdpm(learnSigma, noise, y));

        var learned = new DiffusionSampler(GaussianDiffusion.For(new DiTConfig { InChannels = 4 }, "5"));
        var e2 = Assert.Throws<ModelOutputMismatchException>(() => learned.SampleDdpm(epsOnly, noise, y))!;
        Assert.That(e2.Message, Does.Contain("LearnedRange").And.Contain("needs 8"));
        using var ok = learned.SampleDdpm(learnSigma, noise, y);
        Assert.That(ok.isfinite().all().item<bool>(), Is.True);
        using var fine = fixedLarge.SampleDdpm(epsOnly, noise, y);
        Assert.That(fine.shape, Is.EqualTo(noise.shape));
    }
}
