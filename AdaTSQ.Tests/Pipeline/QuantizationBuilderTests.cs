using AdaTSQ.Abstractions;
using AdaTSQ.Calibration;
using AdaTSQ.Methods.Rtn;
using AdaTSQ.Models;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using AdaTSQ.Pipeline;

namespace AdaTSQ.Tests.Pipeline;

public class QuantizationBuilderTests
{
    private TinyTransformer _model = null!;
    private List<Tensor> _calibration = null!;
    private Tensor _test = null!;
    private Tensor _reference = null!;

    [SetUp]
    public void SetUp()
    {
        _model = new TinyTransformer(width: 64, depth: 2, seed: 3);
        _model.eval();
        _calibration = Enumerable.Range(0, 3).Select(i => TestTensors.Randn(100 + i, 2, 8, 64)).ToList();
        _test = TestTensors.Randn(200, 4, 8, 64);
        using var noGrad = torch.no_grad();
        _reference = _model.call(_test);
    }

    [TearDown]
    public void TearDown()
    {
        _model.Dispose();
        foreach (var t in _calibration) t.Dispose();
        _test.Dispose();
        _reference.Dispose();
    }

    private double OutputError()
    {
        using var noGrad = torch.no_grad();
        using var y = _model.call(_test);
        return TestTensors.RelativeError(y, _reference);
    }

    [Test]
    public void OutputErrorGrowsAsBitsFall()
    {
        var errors = new List<double>();
        foreach (var bits in new[] { 8, 6, 4, 3 })
        {
            var result = new QuantizationBuilder().ForModel(_model).Weights(bits).Quantizer(new RtnQuantizer()).Build().Apply();
            errors.Add(OutputError());
            Assert.That(result.Restore(), Is.EqualTo(9));
        }
        Assert.That(errors, Is.Ordered.Ascending);
        Assert.That(errors.Distinct().Count(), Is.EqualTo(4), $"strictly: {string.Join(", ", errors)}");
        Assert.That(errors[0], Is.GreaterThan(0));
        Assert.That(OutputError(), Is.Zero, "restored model is full precision again");
    }

    [Test]
    public void ReportsPerLayerErrorsThatMatchADirectComputation()
    {
        var result = new QuantizationBuilder().ForModel(_model).Weights(4, groupSize: 16).Activations(8).CalibrationData(_calibration).Build().Apply();
        Assert.That(result.Layers, Has.Count.EqualTo(9));
        Assert.That(result.CalibrationItems, Is.EqualTo(3));
        Assert.That(result.Layers.All(l => l.OutputRelativeError is > 0 and < 0.5), Is.True);
        var fc1 = ModelSurgery.FindQuantLinears(_model).Single(l => l.LayerName == "blocks.0.mlp.fc1");
        using var dq = FakeQuantizer.QuantizeDequantize(fc1.Weight, QuantSpec.Weight(4, 16));
        double expected = TestTensors.RelativeError(dq, fc1.Weight);
        Assert.That(result.Layers.Single(l => l.Name == "blocks.0.mlp.fc1").WeightRelativeError, Is.EqualTo(expected).Within(1e-5));
        Assert.That(result.QuantizedWeightBytes, Is.LessThan(result.FloatWeightBytes / 4));
        Assert.That(result.FormatTable(), Does.Contain("blocks.0.mlp.fc1").And.Contain("W4A8"));
    }

    [Test]
    public void StaticActivationsGetCalibratedRanges()
    {
        new QuantizationBuilder().ForModel(_model).Weights(8).Activations(8, dynamic: false).CalibrationData(_calibration).Build().Apply();
        double error = OutputError();
        Assert.That(error, Is.GreaterThan(0).And.LessThan(0.1));
    }

    [Test]
    public void SelectedLayersOnly()
    {
        var result = new QuantizationBuilder().ForModel(_model).Layers("blocks.*").ExcludeLayers("*.attn.*").Weights(4).Build().Apply();
        Assert.That(result.Layers.Select(l => l.Name), Is.EquivalentTo(new[] { "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2" }));
        Assert.That(ModelSurgery.FindQuantLinears(_model), Has.Count.EqualTo(4));
    }

    [Test]
    public void BuildListsEveryConfigurationProblem()
    {
        var error = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().Weights(9).Activations(8, dynamic: false).Build())!;
        Assert.That(error.Message, Does.Contain("ForModel").And.Contain("bits = 9").And.Contain("static activation"));
        Assert.That(error.Problems, Has.Count.EqualTo(3));
    }

    [Test]
    public void NothingToQuantizeIsAnError()
    {
        var error = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(_model).Build())!;
        Assert.That(error.Message, Does.Contain("Weights"));
    }

    [Test]
    public void GroupNotDividingALayerNamesTheLayerAndChangesNothing()
    {
        var pipeline = new QuantizationBuilder().ForModel(_model).Weights(4, groupSize: 48).Build();
        var error = Assert.Throws<QuantizationConfigurationException>(() => pipeline.Apply())!;
        Assert.That(error.Message, Does.Contain("blocks.0.attn.qkv").And.Contain("48").And.Contain("64"));
        Assert.That(ModelSurgery.FindQuantLinears(_model), Is.Empty);
    }

    [Test]
    public void NonFiniteWeightsNameTheLayerAndChangeNothing()
    {
        var fc2 = ModelSurgery.FindLinears(_model).Single(l => l.Name == "blocks.1.mlp.fc2").Layer;
        using (torch.no_grad()) fc2.weight[3, 7] = torch.tensor(float.NaN);
        var error = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(_model).Weights(4).Build().Apply())!;
        Assert.That(error.Message, Does.Contain("blocks.1.mlp.fc2").And.Contain("1 NaN").And.Contain("[3, 7]"));
        Assert.That(ModelSurgery.FindQuantLinears(_model), Is.Empty);
    }

    [Test]
    public void EmptyCalibrationDataIsATypedErrorAndTheModelIsRestored()
    {
        var pipeline = new QuantizationBuilder().ForModel(_model).Weights(4).CalibrationData(Array.Empty<Tensor>()).Build();
        var error = Assert.Throws<CalibrationException>(() => pipeline.Apply())!;
        Assert.That(error.Message, Does.Contain("empty"));
        Assert.That(ModelSurgery.FindQuantLinears(_model), Is.Empty);
        Assert.That(OutputError(), Is.Zero);
    }

    [Test]
    public void NoLayerMatchingIsAnErrorThatListsTheLayers()
    {
        var error = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(_model).Layers("decoder.*").Weights(4).Build().Apply())!;
        Assert.That(error.Message, Does.Contain("decoder.*").And.Contain("blocks.0.attn.qkv"));
    }

    [Test]
    public void ApplyingTwiceAsksForRestoreFirst()
    {
        var result = new QuantizationBuilder().ForModel(_model).Weights(8).Build().Apply();
        var error = Assert.Throws<QuantizationConfigurationException>(() => new QuantizationBuilder().ForModel(_model).Weights(4).Build().Apply())!;
        Assert.That(error.Message, Does.Contain("already quantized").And.Contain("Restore"));
        Assert.That(result.Restore(), Is.EqualTo(9));
    }

    [Test]
    public void OutputErrorReportCanBeTurnedOff()
    {
        var result = new QuantizationBuilder().ForModel(_model).Weights(4).CalibrationData(_calibration).ReportOutputError(false).Build().Apply();
        Assert.That(result.Layers.All(l => l.OutputRelativeError is null), Is.True);
        Assert.That(result.CalibrationItems, Is.EqualTo(3));
    }

    [Test]
    public void CancellationRestoresTheModel()
    {
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.Stage == "quantize" && p.Completed == 2) cts.Cancel(); });
        var pipeline = new QuantizationBuilder().ForModel(_model).Weights(4).WithProgress(progress).Build();
        Assert.Throws<OperationCanceledException>(() => pipeline.Apply(cts.Token));
        Assert.That(ModelSurgery.FindQuantLinears(_model), Is.Empty);
        Assert.That(OutputError(), Is.Zero);
    }

    [Test]
    public void ProgressCoversCalibrationAndQuantization()
    {
        var seen = new List<QuantizationProgress>();
        new QuantizationBuilder().ForModel(_model).Weights(8).CalibrationData(_calibration).WithProgress(new SyncProgress(seen.Add)).Build().Apply();
        Assert.That(seen.Where(p => p.Stage == "calibrate").Select(p => p.Completed), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(seen.Last(), Is.EqualTo(new QuantizationProgress("quantize", 9, 9, "blocks.1.mlp.fc2")).Or.Property("Completed").EqualTo(9));
    }

    /// <summary>IProgress that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<QuantizationProgress> report) : IProgress<QuantizationProgress>
    {
        public void Report(QuantizationProgress value) => report(value);
    }
}
