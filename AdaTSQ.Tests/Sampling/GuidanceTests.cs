using AdaTSQ.Models.DiT;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Sampling;

/// <summary>Classifier-free guidance on the first k channels (<see cref="SamplingOptions.GuidedChannels"/>), one rule for the samplers and <see cref="DiT.ForwardWithCfg"/>.</summary>
public class GuidanceTests
{
    private const long Null = 9;

    /// <summary>An elementwise model whose prediction depends on the label differently in every channel: cond ≠ uncond everywhere.</summary>
    private static Tensor LabelModel(Tensor x, Tensor t, Tensor y)
    {
        using var scope = torch.NewDisposeScope();
        var pattern = torch.tensor(new float[] { 1f, -2f, 3f, 0.5f }).reshape(1, 4, 1, 1);
        var offset = (y.to(ScalarType.Float32) + 1).reshape(-1, 1, 1, 1) * pattern * 0.1f;
        return (x * 0.3f + offset + x.sin() * 0.01f).MoveToOuterDisposeScope();
    }

    /// <summary>The model output of the first step of a DDIM run (after guidance), and that step's input.</summary>
    private static (Tensor Input, Tensor Output) FirstStep(SamplingOptions options, Tensor noise, Tensor labels)
    {
        using var trajectory = new Trajectory();
        using var _ = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim4")).SampleDdim(LabelModel, noise, labels, options with { OnStep = trajectory.Record });
        return (trajectory.Steps[0].Input.clone(), trajectory.Steps[0].Output.clone());
    }

    [Test]
    public void GuidingTheFirstKChannelsLeavesTheOthersConditional()
    {
        using var noise = TestTensors.Randn(3, 2, 4, 3, 3);
        using var labels = torch.tensor(new long[] { 2, 5 });
        var options = new SamplingOptions { CfgScale = 3.0, NullClass = Null };
        var (x, guided) = FirstStep(options with { GuidedChannels = 3 }, noise, labels);
        using var _x = x;
        using var _g = guided;
        using var t = torch.full(2, 999f);
        using var cond = LabelModel(x, t, labels);
        using var uncond = LabelModel(x, t, torch.full_like(labels, Null));
        using var expected = uncond + (cond - uncond) * 3.0;

        Assert.That((guided[.., ..3] - expected[.., ..3]).abs().max().item<float>(), Is.LessThan(1e-5f), "channels 0–2 are guided");
        Assert.That(TestTensors.Identical(guided[.., 3..], cond[.., 3..]), Is.True, "channel 3 is the conditional prediction");
        Assert.That((expected[.., 3..] - cond[.., 3..]).abs().min().item<float>(), Is.GreaterThan(1e-3f), "(guiding channel 3 would have changed it)");

        // Default (null) = today's behaviour: all C channels guided, the same samples as GuidedChannels = C.
        var (_, all) = FirstStep(options, noise, labels);
        using var _a = all;
        Assert.That((all - expected).abs().max().item<float>(), Is.LessThan(1e-5f), "null guides every channel");
        var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim4"));
        using var byDefault = sampler.SampleDdim(LabelModel, noise, labels, options);
        using var allFour = sampler.SampleDdim(LabelModel, noise, labels, options with { GuidedChannels = 4 });
        using var threeOnly = sampler.SampleDdim(LabelModel, noise, labels, options with { GuidedChannels = 3 });
        Assert.That(TestTensors.Identical(byDefault, allFour), Is.True);
        Assert.That(TestTensors.Identical(threeOnly[.., ..3], allFour[.., ..3]), Is.True, "the model is elementwise: channels do not mix");
        Assert.That(TestTensors.Identical(threeOnly[.., 3..], allFour[.., 3..]), Is.False);

        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.SampleDdim(LabelModel, noise, labels, options with { GuidedChannels = 5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.SampleDdim(LabelModel, noise, labels, options with { GuidedChannels = 0 }));
    }

    [Test]
    public void FlowMatchingGuidesTheSameChannels()
    {
        using var noise = TestTensors.Randn(4, 2, 4, 3, 3);
        using var labels = torch.tensor(new long[] { 1, 7 });
        using var trajectory = new Trajectory();
        using var _ = new FlowMatchingSampler(3).Sample(LabelModel, noise, labels, new SamplingOptions { CfgScale = 2.5, NullClass = Null, GuidedChannels = 2, OnStep = trajectory.Record });
        var step = trajectory.Steps[1];
        using var t = torch.full(2, (float)step.Step.Timestep);
        using var cond = LabelModel(step.Input, t, labels);
        using var uncond = LabelModel(step.Input, t, torch.full_like(labels, Null));
        using var expected = uncond + (cond - uncond) * 2.5;
        Assert.That((step.Output[.., ..2] - expected[.., ..2]).abs().max().item<float>(), Is.LessThan(1e-5f));
        Assert.That(TestTensors.Identical(step.Output[.., 2..], cond[.., 2..]), Is.True);
    }

    [Test]
    public void TheSamplerGuidesExactlyAsDiTForwardWithCfg()
    {
        // A learn-sigma DiT with the official guided channels: the DDPM step from the sampler equals the
        // step built by hand from ForwardWithCfg's conditional half, PMeanVariance and the seeded noise —
        // so ε channel 3 and the variance channels must be the conditional ones in both.
        var config = new DiTConfig { InputSize = 8, PatchSize = 2, InChannels = 4, HiddenSize = 32, Depth = 2, NumHeads = 4, NumClasses = 5, LearnSigma = true };
        Assert.That(config.OfficialGuidedChannels, Is.EqualTo(3));
        Assert.That(DiTConfig.Named("DiT-XL/2").OfficialGuidedChannels, Is.EqualTo(3));
        Assert.That(DiTConfig.Mnist.OfficialGuidedChannels, Is.EqualTo(1), "a 1-channel model is guided on all of it");
        using var model = new DiT(config, seed: 4);
        using (torch.no_grad())
        {
            var gen = new Generator(11);
            foreach (var w in model.parameters()) w.add_(torch.randn(w.shape, generator: gen) * 0.1);
        }
        model.eval();
        var diffusion = GaussianDiffusion.For(config, "3");
        Assert.That(diffusion.VarianceType, Is.EqualTo(VarianceType.LearnedRange));
        using var noise = TestTensors.Randn(6, 2, 4, 8, 8);
        using var labels = torch.tensor(new long[] { 0, 3 });
        using var trajectory = new Trajectory();
        var options = new SamplingOptions { Seed = 13, CfgScale = 4.0, NullClass = model.NullClass, GuidedChannels = config.OfficialGuidedChannels, OnStep = trajectory.Record };
        using var _ = new DiffusionSampler(diffusion).SampleDdpm((x, t, y) => model.call(x, t, y), noise, labels, options);

        int i = diffusion.NumTimesteps - 1;
        using var both = torch.cat([noise, noise]);
        using var t2 = torch.full(4, (float)diffusion.TimestepMap[i]);
        using var y2 = torch.cat([labels, torch.full_like(labels, model.NullClass)]);
        using var output = model.ForwardWithCfg(both, t2, y2, 4.0, config.OfficialGuidedChannels);
        using var p = diffusion.PMeanVariance(output[..2], noise, i, clipDenoised: false);
        using var z = torch.randn(noise.shape, generator: new Generator(13));
        using var expected = p.Mean + z * (p.LogVariance * 0.5).exp();
        Assert.That((trajectory.Steps[0].Next - expected).abs().max().item<float>(), Is.LessThan(1e-5f));
        using var allGuided = model.ForwardWithCfg(both, t2, y2, 4.0);
        using var pAll = diffusion.PMeanVariance(allGuided[..2], noise, i, clipDenoised: false);
        Assert.That((pAll.Mean - p.Mean).abs().max().item<float>(), Is.GreaterThan(1e-4f), "(guiding all 4 channels gives another step)");
        // The second half of ForwardWithCfg (official layout): guided channels repeated, the rest unconditional.
        using var uncond = model.call(noise, t2[..2], y2[2..]);
        Assert.That((output[2.., ..3] - output[..2, ..3]).abs().max().item<float>(), Is.Zero);
        Assert.That((output[2.., 3..] - uncond[.., 3..]).abs().max().item<float>(), Is.LessThan(1e-5f));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.ForwardWithCfg(both, t2, y2, 4.0, guidedChannels: 5));
    }
}
