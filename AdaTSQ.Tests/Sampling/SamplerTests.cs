using AdaTSQ.Abstractions;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Sampling;

public class SamplerTests
{
    /// <summary>The exact ε-predictor for data that is always the constant image <c>value</c>.</summary>
    private static Denoiser Oracle(GaussianDiffusion d, float value) => (x, t, _) =>
    {
        double ac = d.AlphasCumprod[Array.IndexOf(d.TimestepMap, (int)t[0].item<float>())];
        return (x - value * Math.Sqrt(ac)) / Math.Sqrt(1 - ac);
    };

    [Test]
    public void DdimWithAnExactDenoiserRecoversTheData()
    {
        var d = GaussianDiffusion.Create(1000, "ddim25");
        using var noise = TestTensors.Randn(1, 3, 1, 4, 4);
        using var y = torch.zeros(new long[] { 3 }, dtype: ScalarType.Int64);
        using var x0 = new DiffusionSampler(d).SampleDdim(Oracle(d, 0.5f), noise, y);
        Assert.That((x0 - 0.5f).abs().max().item<float>(), Is.LessThan(1e-3f));
    }

    [Test]
    public void DdpmIsSeededAndSetsTheTimestepContext()
    {
        var d = GaussianDiffusion.Create(1000, "20");
        var seen = new List<TimestepInfo?>();
        Denoiser model = (x, t, y) => { seen.Add(TimestepContext.Current); return Oracle(d, -0.25f)(x, t, y); };
        using var noise = TestTensors.Randn(2, 2, 1, 4, 4);
        using var y = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        var sampler = new DiffusionSampler(d);
        using var a = sampler.SampleDdpm(model, noise, y, new SamplingOptions { Seed = 7 });
        using var b = sampler.SampleDdpm(model, noise, y, new SamplingOptions { Seed = 7 });
        using var c = sampler.SampleDdpm(model, noise, y, new SamplingOptions { Seed = 8 });
        Assert.That(TestTensors.Identical(a, b), Is.True);
        Assert.That((a + 0.25f).abs().max().item<float>(), Is.LessThan(0.05f), "the exact denoiser's samples are the data up to the last step's noise");
        Assert.That(seen.Take(20).Select(s => s!.Value.StepIndex), Is.EqualTo(Enumerable.Range(0, 20)));
        Assert.That(seen[0]!.Value.Timestep, Is.EqualTo(999));
        Assert.That(seen[19]!.Value.Timestep, Is.EqualTo(0));
        Assert.That(TimestepContext.Current, Is.Null);
    }

    [Test]
    public void StepByStepSamplersMatchTheirLoopsBitForBit()
    {
        var d = GaussianDiffusion.Create(1000, "ddim8");
        using var noise = TestTensors.Randn(4, 2, 1, 4, 4);
        using var y = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        var sampler = new DiffusionSampler(d);
        var options = new SamplingOptions { ClipDenoised = true };
        Denoiser model = (x, t, l) => Oracle(d, 0.3f)(x, t, l) * 1.1 + x.sin() * 0.05;   // not exact, so clipping matters
        using var loop = sampler.SampleDdim(model, noise, y, options);
        var steps = sampler.DdimSteps(options);
        var x = noise.clone();
        for (int k = 0; k < steps.StepCount; k++) { var next = steps.Step(model, x, y, k); x.Dispose(); x = next; }
        using (x) Assert.That(TestTensors.Identical(x, loop), Is.True);
        Assert.That(steps.StepInfo(0).Timestep, Is.EqualTo(d.TimestepMap[^1]));
        Assert.Throws<NotSupportedException>(() => sampler.DdimSteps(new SamplingOptions { Eta = 0.5 }));

        var flow = new FlowMatchingSampler(6, shift: 2);
        Denoiser velocity = (xt, t, l) => xt * 0.7 - 0.2;
        using var flowLoop = flow.Sample(velocity, noise, y);
        var euler = flow.EulerSteps();
        var z = noise.clone();
        for (int k = 0; k < euler.StepCount; k++) { var next = euler.Step(velocity, z, y, k); z.Dispose(); z = next; }
        using (z) Assert.That(TestTensors.Identical(z, flowLoop), Is.True);
    }

    [Test]
    public void TrajectoryRecordsEveryStep()
    {
        var d = GaussianDiffusion.Create(1000, "ddim10");
        using var noise = TestTensors.Randn(3, 1, 1, 2, 2);
        using var y = torch.zeros(new long[] { 1 }, dtype: ScalarType.Int64);
        using var trajectory = new Trajectory();
        using var x0 = new DiffusionSampler(d).SampleDdim(Oracle(d, 0f), noise, y, new SamplingOptions { OnStep = trajectory.Record });
        Assert.That(trajectory.Steps, Has.Count.EqualTo(10));
        Assert.That(TestTensors.Identical(trajectory.Steps[0].Input, noise), Is.True);
        Assert.That(TestTensors.Identical(trajectory.Steps[^1].Next, x0), Is.True);
    }

    [Test]
    public void FlowMatchingEulerFollowsAStraightPathExactly()
    {
        // For data fixed at x0, the exact velocity is v = (x_t − x0)/t; Euler on a straight line is exact.
        var sampler = new FlowMatchingSampler(steps: 8, shift: 3.0);
        Denoiser model = (x, t, _) => (x - 0.75f) / (t[0].item<float>() / 1000f);
        using var noise = TestTensors.Randn(4, 2, 1, 3, 3);
        using var y = torch.zeros(new long[] { 2 }, dtype: ScalarType.Int64);
        using var x0 = sampler.Sample(model, noise, y);
        Assert.That((x0 - 0.75f).abs().max().item<float>(), Is.LessThan(1e-4f));
        var times = sampler.Times();
        Assert.That(times[0], Is.EqualTo(1.0));
        Assert.That(times[^1], Is.EqualTo(0.0));
        Assert.That(times[4], Is.EqualTo(3 * 0.5 / (1 + 2 * 0.5)).Within(1e-12), "shifted time s·t/(1+(s−1)t)");
    }
}
