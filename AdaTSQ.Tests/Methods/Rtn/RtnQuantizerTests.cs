using AdaTSQ.Methods.Rtn;
using AdaTSQ.Quantization;
using TorchSharp;

namespace AdaTSQ.Tests.Methods.Rtn;

public class RtnQuantizerTests
{
    [Test]
    public void RoundsToTheNearestLevelOfEachGroup()
    {
        using var w = TestTensors.Randn(31, 16, 64);
        using var q = new RtnQuantizer().Quantize("fc", w, QuantSpec.Weight(3, 16), statistics: null);
        using var expected = FakeQuantizer.QuantizeDequantize(w, QuantSpec.Weight(3, 16));
        using var dq = q.Dequantize();
        Assert.That(TestTensors.Identical(dq, expected), Is.True);
        Assert.That(q.Spec, Is.EqualTo(QuantSpec.Weight(3, 16)));
    }

    [Test]
    public void RefusesSpecsThatDoNotFitTheLayerAndNamesIt()
    {
        using var w = TestTensors.Randn(32, 16, 60);
        var error = Assert.Throws<QuantSpecException>(() => new RtnQuantizer().Quantize("blocks.0.fc1", w, QuantSpec.Weight(4, 64), null))!;
        Assert.That(error.Message, Does.Contain("blocks.0.fc1").And.Contain("64").And.Contain("60"));
        Assert.Throws<LayerQuantizationException>(() => new RtnQuantizer().Quantize("fc", w, QuantSpec.FullPrecision, null));
    }

    [Test]
    public void HonoursCancellation()
    {
        using var w = TestTensors.Randn(33, 4, 8);
        Assert.Throws<OperationCanceledException>(() => new RtnQuantizer().Quantize("fc", w, QuantSpec.Weight(8), null, new CancellationToken(canceled: true)));
    }
}
