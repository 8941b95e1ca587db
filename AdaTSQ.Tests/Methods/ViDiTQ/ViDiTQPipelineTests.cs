using AdaTSQ.Calibration;
using AdaTSQ.Methods.AdaTSQ.Search;
using AdaTSQ.Methods.ViDiTQ;
using AdaTSQ.Metrics;
using AdaTSQ.Models.DiT;
using AdaTSQ.Pipeline;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.ViDiTQ;

/// <summary>ViDiT-Q on the shipped DiT through the builder: per-step balancing on the integer kernels, and the mixed precision.</summary>
public class ViDiTQPipelineTests
{
    private const int Steps = 4;

    private static DiT LoadModel() =>
        DiTCheckpoint.Load(Path.Combine(Data.IdxFileTests.RepositoryRoot(), "models", "fashion-dit.safetensors"));

    private static SamplingOptions Sampling(DiT model) => new() { CfgScale = 2, NullClass = model.NullClass, ClipDenoised = true, Seed = 3 };

    private static DiffusionSampler Sampler() => new(GaussianDiffusion.Create(1000, $"ddim{Steps}"));

    private static TrajectoryCalibrationSource Calibration(DiT model) =>
        TrajectoryCalibrationSource.ForDiT(model, Sampler(), ddim: true, new TrajectoryCalibrationOptions
        {
            Samples = 8, BatchSize = 8, Seed = 7, Sampling = Sampling(model) with { Seed = 8 },
        });

    private static Tensor Sample(DiT model, long seed = 21, int n = 6)
    {
        using var noise = TestTensors.Randn(seed, n, model.Config.InChannels, model.Config.InputSize, model.Config.InputSize);
        using var labels = torch.tensor(Enumerable.Range(0, n).Select(i => (long)(i % model.Config.NumClasses)).ToArray());
        return Sampler().SampleDdim((x, t, y) => model.call(x, t, y), noise, labels, Sampling(model));
    }

    [TestCase(8, 8)]
    [TestCase(4, 4)]
    public void PerStepBalancingRunsOnTheIntegerKernels(int weightBits, int activationBits)
    {
        using var model = LoadModel();
        using var reference = Sample(model);
        var result = new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(weightBits).Activations(activationBits)
            .CalibrationData(Calibration(model)).UseViDiTQ(new ViDiTQOptions { TimestepGroups = 2 }).ReportOutputError(false).Build().Apply();
        try
        {
            var layers = ModelSurgery.FindQuantLinears(model);
            Assert.That(layers.All(l => l.InputSmoothingGroups.Count == 2 && l.InputRotation is not null), Is.True);
            Assert.That(layers.All(l => l.HasStepWeightVersion(QuantSpec.Weight(weightBits), 0, 1) && l.HasStepWeightVersion(QuantSpec.Weight(weightBits), 2, 3)), Is.True);
            using var fake = Sample(model);
            using var kernel = new IntegerLinearKernel { Strict = true };
            IntegerLinearKernel.Attach(model, kernel);
            using var integer = Sample(model);
            IntegerLinearKernel.Attach(model, null);
            double vsFake = ImageMetrics.Psnr(integer, fake), vsFp = ImageMetrics.Psnr(fake, reference);
            TestContext.Out.WriteLine($"ViDiT-Q W{weightBits}A{activationBits}: PSNR vs FP {vsFp:F2} dB; integer vs fake-quant {vsFake:F2} dB; {kernel.IntegerCalls} integer calls");
            Assert.That(kernel.IntegerCalls, Is.GreaterThan(0));
            Assert.That(kernel.FallbackCalls, Is.Zero);
            Assert.That(vsFake, Is.GreaterThan(30), "the kernels run the same per-step smoothing and versions as fake quantization");
            Assert.That(vsFp, Is.GreaterThan(weightBits == 8 ? 25 : 8));
        }
        finally { result.Restore(); }
    }

    [Test]
    public void TheMixedPrecisionRespectsTheBudgetAndGivesTheSensitiveLayersMoreBits()
    {
        using var model = LoadModel();
        using var searchSet = SearchTrajectories.ForDiT(model, Sampler().DdimSteps(Sampling(model)), samples: 4, seed: 7000);
        // One block (5 layers) keeps the measurement short; 7 average bits leave room for any two of its layers at 8 bits.
        var options = new ViDiTQOptions { MixedPrecision = new ViDiTQMixedPrecisionOptions { AverageWeightBits = 7 } };
        var result = new QuantizationBuilder().ForModel(model).Layers("blocks.0.*").Weights(4).Activations(8)
            .CalibrationData(Calibration(model)).UseViDiTQ(options, searchSet).ReportOutputError(false).Build().Apply();
        try
        {
            var report = result.ViDiTQMixedPrecision!;
            Assert.That(report, Is.Not.Null);
            Assert.That(report.AverageWeightBits, Is.LessThanOrEqualTo(7 + 1e-9));
            Assert.That(report.Promoted.Count, Is.LessThan(report.Layers.Count), "the budget binds");
            Assert.That(report.Promoted, Is.Not.Empty);
            Assert.That(report.Metrics, Is.EqualTo(new[] { "structure-mse", "detail-mse" }));
            var layers = ModelSurgery.FindQuantLinears(model);
            double bits = layers.Sum(l => (double)l.InFeatures * l.OutFeatures * result.Policy.Resolve(l.LayerName, null).Weight.Bits) / layers.Sum(l => (double)l.InFeatures * l.OutFeatures);
            Assert.That(bits, Is.EqualTo(report.AverageWeightBits).Within(1e-9));
            var promoted = report.Promoted.Select(p => p.Layer).ToHashSet();
            foreach (var layer in layers)
            {
                var config = result.Policy.Resolve(layer.LayerName, null);
                Assert.That(config, Is.EqualTo(promoted.Contains(layer.LayerName) ? report.High : report.Low), layer.LayerName);
                Assert.That(layer.WeightVersions, Is.EqualTo(new[] { config.Weight }), "unused versions dropped");
            }
            // Each metric's most sensitive layer is among the promoted ones (the budget fits any two layers).
            for (int m = 0; m < report.Metrics.Count; m++)
            {
                int top = Enumerable.Range(0, report.Layers.Count).MaxBy(l => report.Sensitivity[m][l]);
                Assert.That(promoted, Does.Contain(report.Layers[top]), report.Metrics[m]);
            }
            using var samples = Sample(model);
            Assert.That(samples.isfinite().all().item<bool>(), Is.True);
        }
        finally { result.Restore(); }
    }
}
