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
}
