using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Gptq;
using AdaTSQ.Models;
using AdaTSQ.Pipeline;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Pipeline;

public class CaptureStageTests
{
    /// <summary>Runs the model over its batches and counts how often it was asked to.</summary>
    private sealed class CountingSource(nn.Module<Tensor, Tensor> model, IReadOnlyList<Tensor> inputs) : ICalibrationSource
    {
        public int Runs { get; private set; }
        public int Count => inputs.Count;
        public void Run(int index, CancellationToken cancellationToken)
        {
            Runs++;
            using var _ = model.call(inputs[index]);
        }
    }

    private string _dir = null!;
    private List<Tensor> _batches = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Directory.CreateTempSubdirectory("adatsq-cache-").FullName, "cache");
        _batches = Enumerable.Range(0, 3).Select(i => TestTensors.Randn(300 + i, 2, 8, 32)).ToList();
    }

    [TearDown]
    public void TearDown()
    {
        foreach (var t in _batches) t.Dispose();
        Directory.Delete(Path.GetDirectoryName(_dir)!, recursive: true);
    }

    private (IReadOnlyList<(string, double?)> Reports, int Runs) Quantize(bool blockwise, int weightBits = 3)
    {
        using var model = new TinyTransformer(width: 32, depth: 2, seed: 5);
        model.eval();
        var source = new CountingSource(model, _batches);
        var builder = new QuantizationBuilder().ForModel(model).Weights(weightBits).CalibrationData(source).UseHessianOptimization().CacheCalibration(_dir);
        if (blockwise) builder.CalibrateBlockByBlock();
        var result = builder.Build().Apply();
        return (result.Layers.Select(l => (l.Name, l.OutputRelativeError)).ToList(), source.Runs);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ASecondRunOfThePlanLoadsTheStatisticsInsteadOfCapturingAndGivesTheSameWeights(bool blockwise)
    {
        var first = Quantize(blockwise);
        Assert.That(first.Runs, Is.GreaterThan(0));
        Assert.That(Directory.GetFiles(_dir, "calibration-*.safetensors"), Is.Not.Empty);

        var second = Quantize(blockwise);
        Assert.That(second.Runs, Is.EqualTo(0), "the cached statistics were not used");
        Assert.That(second.Reports, Is.EqualTo(first.Reports));
    }

    [Test]
    public void ACacheMadeForAnotherPlanIsNotUsed()
    {
        Quantize(blockwise: false);
        using var model = new TinyTransformer(width: 32, depth: 2, seed: 5);
        model.eval();
        var source = new CountingSource(model, _batches);
        // RTN without the output-error report collects no second moments: another fingerprint.
        new QuantizationBuilder().ForModel(model).Weights(4).CalibrationData(source).ReportOutputError(false).CacheCalibration(_dir).Build().Apply();
        Assert.That(source.Runs, Is.EqualTo(_batches.Count));
    }
}
