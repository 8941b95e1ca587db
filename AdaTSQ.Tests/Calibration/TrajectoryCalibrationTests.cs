using AdaTSQ.Calibration;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Models.DiT;
using AdaTSQ.Quantization;
using AdaTSQ.Sampling;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;
using AdaTSQ.Methods.AdaTSQ.Fisher;
using AdaTSQ.Methods.QuaRot;
using AdaTSQ.Methods.SvdQuant;

namespace AdaTSQ.Tests.Calibration;

/// <summary>Calibration over the shipped DiT's own sampling trajectories: per-step statistics, reproducibility, block-by-block memory.</summary>
public class TrajectoryCalibrationTests
{
    private static DiT LoadModel() =>
        DiTCheckpoint.Load(Path.Combine(Data.IdxFileTests.RepositoryRoot(), "models", "fashion-dit.safetensors"));

    private static TrajectoryCalibrationSource Source(DiT model, int steps = 4, long seed = 7, int samples = 6) =>
        TrajectoryCalibrationSource.ForDiT(model, new DiffusionSampler(GaussianDiffusion.Create(1000, $"ddim{steps}")), ddim: true,
            new TrajectoryCalibrationOptions
            {
                Samples = samples, BatchSize = 4, Seed = seed,
                Sampling = new SamplingOptions { CfgScale = 2, NullClass = model.NullClass, ClipDenoised = true },
            });

    [Test]
    public void EveryLayerIsObservedAtEveryStepReproducibly()
    {
        using var model = LoadModel();
        var surgery = ModelSurgery.ReplaceLinears(model, new LayerSelector(["blocks.*"], []));
        var layers = ModelSurgery.FindQuantLinears(model);
        var source = Source(model);
        Assert.That(source.Count, Is.EqualTo(2), "6 samples in batches of 4");
        using var a = new UniformCalibrator().Calibrate(layers, source, CalibrationRequirements.SecondMoments);
        using var b = new UniformCalibrator().Calibrate(layers, Source(model), CalibrationRequirements.SecondMoments);
        using var c = new UniformCalibrator().Calibrate(layers, Source(model, seed: 8), CalibrationRequirements.SecondMoments);
        foreach (var layer in layers)
        {
            var sa = a.For(layer.LayerName)!;
            Assert.That(sa.Steps.Keys, Is.EquivalentTo(new[] { 0, 1, 2, 3 }), layer.LayerName);
            // 6 samples × 2 (CFG) × 49 tokens per step (adaLN sees one row per sample).
            long tokens = layer.LayerName.Contains("adaLN") ? 12 : 12 * 49;
            Assert.That(sa.Steps[2].Rows, Is.EqualTo(tokens), layer.LayerName);
            Assert.That(TestTensors.Identical(sa.SecondMoment!, b.For(layer.LayerName)!.SecondMoment!), Is.True, $"{layer.LayerName}: same seed, same statistics");
        }
        Assert.That(TestTensors.Identical(a.For("blocks.0.attn.qkv")!.SecondMoment!, c.For("blocks.0.attn.qkv")!.SecondMoment!), Is.False, "another seed, other data");
        ModelSurgery.Restore(model);
    }

    [Test]
    public void BlockByBlockKeepsOnlyOneBlocksStatisticsAndMatchesOnePassWithoutFeedback()
    {
        using var model = LoadModel();
        QuantizationResult Run(BlockwiseCalibration? blockwise)
        {
            var builder = new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(4).Activations(8)
                .CalibrationData(Source(model, steps: 2, samples: 4)).UseHessianOptimization();
            if (blockwise is not null) builder.CalibrateBlockByBlock(blockwise);
            return builder.Build().Apply();
        }
        var onePass = Run(null);
        var expected = ModelSurgery.FindQuantLinears(model).ToDictionary(l => l.LayerName, l => l.GetWeightVersion(QuantSpec.Weight(4)).Dequantize());
        long onePassPeak = onePass.PeakCalibrationBytes;
        onePass.Restore();

        var blockwise = Run(new BlockwiseCalibration { FeedQuantizedOutputs = false });
        var layers = ModelSurgery.FindQuantLinears(model);
        // One block = 5 layers (adaLN, qkv, proj, fc1, fc2) of the 6 blocks: peak = the largest block, ≈ 1/6 of all.
        long perBlock = layers.Where(l => l.LayerName.StartsWith("blocks.0.", StringComparison.Ordinal)).Sum(l => l.InFeatures * l.InFeatures * 8);
        Assert.That(blockwise.PeakCalibrationBytes, Is.LessThan(onePassPeak / 5));
        Assert.That(blockwise.PeakCalibrationBytes, Is.GreaterThanOrEqualTo(perBlock));
        Assert.That(onePassPeak, Is.GreaterThanOrEqualTo(6 * perBlock));
        foreach (var layer in layers)
        {
            using var q = layer.GetWeightVersion(QuantSpec.Weight(4)).Dequantize();
            Assert.That(TestTensors.Identical(q, expected[layer.LayerName]), Is.True, $"{layer.LayerName}: same statistics, same GPTQ result");
        }
        blockwise.Restore();

        // Feeding the quantized blocks' outputs forward changes what later blocks are calibrated on (not the first block).
        var fed = Run(new BlockwiseCalibration());
        var fedLayers = ModelSurgery.FindQuantLinears(model).ToDictionary(l => l.LayerName);
        using (var first = fedLayers["blocks.0.attn.qkv"].GetWeightVersion(QuantSpec.Weight(4)).Dequantize())
            Assert.That(TestTensors.Identical(first, expected["blocks.0.attn.qkv"]), Is.True);
        using (var later = fedLayers["blocks.5.mlp.fc2"].GetWeightVersion(QuantSpec.Weight(4)).Dequantize())
            Assert.That(TestTensors.Identical(later, expected["blocks.5.mlp.fc2"]), Is.False);
        fed.Restore();
        foreach (var t in expected.Values) t.Dispose();
    }

    [Test]
    public void FisherCalibrationThroughTheBuilderEstimatesOnceAndQuantizes()
    {
        using var model = LoadModel();
        var diffusion = GaussianDiffusion.Create(1000, "ddim2");
        var train = AdaTSQ.Data.ImageDataset.FashionMnist(train: true);
        var (x0, y) = train.Batch(Enumerable.Range(0, 16).ToArray());
        var estimator = new TemporalFisherEstimator((x, t, l) => model.call(x, t, l), diffusion, x0, y, new TemporalFisherOptions { SamplesPerStep = 4, MicroBatch = 2 });
        var calibration = new FisherCalibrationOptions { Weighting = new FisherWeighting { Temperature = 2 } };
        var result = new QuantizationBuilder().ForModel(model).Layers("blocks.*").Weights(4).Activations(8)
            .CalibrationData(Source(model, steps: 2, samples: 4)).UseFisherCalibration(estimator, calibration).UseHessianOptimization(new GptqOptions { BlockSize = 64 })
            .CalibrateBlockByBlock().Build().Apply();
        Assert.That(result.QuantizerName, Is.EqualTo("GPTQ"));
        Assert.That(result.Layers, Has.Count.EqualTo(30));
        Assert.That(result.Layers.All(l => l.OutputRelativeError is > 0 and < 0.5), Is.True, result.FormatTable());
        result.Restore();
        x0.Dispose(); y.Dispose();
    }
    [Test]
    public void SvdQuantAndQuaRotComposeWithFisherCalibrationAndGptqAtW4A4()
    {
        using var model = LoadModel();
        var diffusion = GaussianDiffusion.Create(1000, "ddim2");
        var train = AdaTSQ.Data.ImageDataset.FashionMnist(train: true);
        var (x0, y) = train.Batch(Enumerable.Range(0, 16).ToArray());
        var fisher = new TemporalFisherEstimator((x, t, l) => model.call(x, t, l), diffusion, x0, y, new TemporalFisherOptions { SamplesPerStep = 4, MicroBatch = 2 })
            .Estimate(ModelSurgery.FindLinears(model).Where(l => l.Name.StartsWith("blocks.0.", StringComparison.Ordinal)).Select(l => (l.Name, (Tensor)l.Layer.weight!)).ToList());
        // The first block only (5 layers), to keep the test short. The model's output (not the layers' reports: SVDQuant's versions stand for the residual, so their relative
        // error is not comparable with a plain layer's) on a fixed noisy input, against full precision.
        using var probe = TestTensors.Randn(31, 4, 1, 28, 28);
        using var t = torch.full(4, 500L, ScalarType.Int64);
        using var labels = torch.tensor(new long[] { 0, 3, 5, 9 });
        using var fp = model.call(probe, t, labels).detach();
        var activations = QuantSpec.Activation(bits: 4, groupSize: 64);
        double Run(Func<QuantizationBuilder, QuantizationBuilder> method, Action<IReadOnlyList<QuantLinear>> check)
        {
            var result = method(new QuantizationBuilder().ForModel(model).Layers("blocks.0.*").Weights(4, groupSize: 64).Activations(activations)
                    .CalibrationData(Source(model, steps: 2, samples: 4)))
                .UseFisherCalibration(fisher).UseHessianOptimization(new GptqOptions { BlockSize = 64 }).Build().Apply();
            check(ModelSurgery.FindQuantLinears(model));
            using var q = model.call(probe, t, labels);
            double error = TestTensors.RelativeError(q, fp);
            result.Restore();
            return error;
        }

        double plain = Run(b => b, _ => { });
        double svd = Run(b => b.UseSvdQuant(new SvdQuantOptions { Rank = 16, Alphas = [0.3, 0.6] }),
            layers => Assert.That(layers.Count(l => l.LowRank is not null), Is.EqualTo(5), "every quantized layer has a branch"));
        double rotated = Run(b => b.RotateInputs(new QuaRotOptions { Seed = 1 }),
            layers => Assert.That(layers.Count(l => l.InputRotation is not null), Is.EqualTo(5), "every quantized layer is rotated"));

        TestContext.Out.WriteLine($"W4A4 g64, GPTQ + Fisher, relative error of the model's output at t = 500: plain {plain:P2}, SVDQuant r16 {svd:P2}, QuaRot {rotated:P2}");
        Assert.That(svd, Is.LessThan(plain), "the low-rank branch and smoothing lower the model's error");
        Assert.That(rotated, Is.LessThan(1.5 * plain), "the rotation does not break the model");
        x0.Dispose(); y.Dispose();
    }
}
