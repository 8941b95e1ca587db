// snippet: fisher-gptq
using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Pipeline;
using AdaTSQ.Sampling;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void FisherGuidedGptqOnTrajectories()
    {
        using var dit = TinyDiT();
        var images = TrainingImages(dit, 16);
        using var x0 = images.X0;
        using var labels = images.Labels;

        // snippet: fisher-gptq
        var sampler = new DiffusionSampler(GaussianDiffusion.Create(1000, "ddim20"));
        var sampling = new SamplingOptions { CfgScale = 2.0, NullClass = dit.NullClass, ClipDenoised = true };
        // Calibration data = the FP model's own sampling trajectories (seeded noise, round-robin labels).
        var trajectories = TrajectoryCalibrationSource.ForDiT(dit, sampler, ddim: true,
            new TrajectoryCalibrationOptions { Samples = 16, BatchSize = 16, Seed = 1000, Sampling = sampling with { Seed = 2000 } });
        // Temporal Fisher from real training images x0 (or the FP model's own samples, for data-free use).
        var fisher = new TemporalFisherEstimator((x, t, y) => dit.call(x, t, y), sampler.Diffusion, x0, labels,
            new TemporalFisherOptions { SamplesPerStep = 8, Seed = 0 });

        var result = new QuantizationBuilder()
            .ForModel(dit).Layers("blocks.*")
            .Weights(bits: 4).Activations(bits: 8)
            .CalibrationData(trajectories)
            .UseFisherCalibration(fisher, new FisherCalibrationOptions { Weighting = new FisherWeighting { Temperature = 1, Floor = 0.1 } })
            .UseHessianOptimization(new GptqOptions { ActOrder = false, PercDamp = 0.01 })
            .CalibrateBlockByBlock()               // optional: one block's Hessians in memory at a time
            .Build().Apply();
        // end snippet

        Assert.That(result.QuantizerName, Is.EqualTo("GPTQ"));
        Assert.That(result.Layers, Has.Count.EqualTo(5));
        Assert.That(result.CalibrationItems, Is.GreaterThan(0));
        Assert.That(result.Layers.All(l => l.OutputRelativeError is > 0 and < 0.5), Is.True, result.FormatTable());
        result.Restore();
    }
}
