using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

public class FakeQuantizerTests
{
    private static IEnumerable<TestCaseData> Specs()
    {
        foreach (int bits in new[] { 2, 3, 4, 8 })
            foreach (bool sym in new[] { true, false })
            {
                yield return new TestCaseData(new QuantSpec { Bits = bits, Symmetric = sym, Granularity = QuantGranularity.PerTensor }).SetName($"PerTensor_{bits}b_{(sym ? "sym" : "asym")}");
                yield return new TestCaseData(QuantSpec.Weight(bits, symmetric: sym)).SetName($"PerChannel_{bits}b_{(sym ? "sym" : "asym")}");
                yield return new TestCaseData(QuantSpec.Weight(bits, groupSize: 16, symmetric: sym)).SetName($"PerGroup16_{bits}b_{(sym ? "sym" : "asym")}");
                yield return new TestCaseData(QuantSpec.Activation(bits, symmetric: sym)).SetName($"PerToken_{bits}b_{(sym ? "sym" : "asym")}");
            }
    }

    [TestCaseSource(nameof(Specs))]
    public void ErrorIsAtMostHalfAStepAndCodesStayOnTheGrid(QuantSpec spec)
    {
        using var scope = torch.NewDisposeScope();
        var x = TestTensors.Randn(7, 8, 64) * 3 + 0.5;
        var dq = FakeQuantizer.QuantizeDequantize(x, spec);
        using var p = FakeQuantizer.ComputeParams(x, spec);
        var codes = FakeQuantizer.Quantize(x, spec, p);

        var error = (FakeQuantizer.GroupView(dq, spec) - FakeQuantizer.GroupView(x, spec)).abs();
        var bound = p.Scale / 2 * (1 + 1e-5) + 1e-6;
        Assert.That((error <= bound).all().item<bool>(), Is.True, $"max error / step = {(error / p.Scale).max().item<float>()}");
        Assert.That(codes.min().item<float>(), Is.GreaterThanOrEqualTo(spec.QMin));
        Assert.That(codes.max().item<float>(), Is.LessThanOrEqualTo(spec.QMax));
        Assert.That((codes - codes.round()).abs().max().item<float>(), Is.Zero, "codes are integers");
        Assert.That(dq.shape, Is.EqualTo(x.shape));
        Assert.That((dq - x).abs().max().item<float>(), Is.GreaterThan(0f), "quantization changed something");
    }

    [Test]
    public void HandComputedPerGroupSymmetricExample()
    {
        // Groups of 4, 4-bit symmetric: grid −7..7. Group 1: max|x| = 1 → step 1/7; group 2: max|x| = 6 → step 6/7.
        using var x = torch.tensor(new float[] { 0f, 0.3f, 1f, -1f, 2f, 4f, -6f, 1f }).reshape(1, 8);
        using var dq = FakeQuantizer.QuantizeDequantize(x, QuantSpec.Weight(4, groupSize: 4));
        var expected = new[] { 0f, 2f / 7, 1f, -1f, 12f / 7, 30f / 7, -6f, 6f / 7 };
        Assert.That(TestTensors.Data(dq), Is.EqualTo(expected).Within(1e-6f));
    }

    [Test]
    public void HandComputedAsymmetricExample()
    {
        // 2-bit asymmetric: range [−0.6, 2.4] → step 1, zero point round(0.6) = 1, codes 0..3 → values −1, 0, 1, 2.
        using var x = torch.tensor(new float[] { -0.6f, 0.2f, 1.0f, 2.4f }).reshape(1, 4);
        var spec = QuantSpec.Weight(2, symmetric: false);
        using var p = FakeQuantizer.ComputeParams(x, spec);
        using var dq = FakeQuantizer.QuantizeDequantize(x, spec, p);
        Assert.That(p.Scale.item<float>(), Is.EqualTo(1f).Within(1e-6f));
        Assert.That(p.Zero!.item<float>(), Is.EqualTo(1f));
        Assert.That(TestTensors.Data(dq), Is.EqualTo(new[] { -1f, 0f, 1f, 2f }).Within(1e-6f));
    }

    [Test]
    public void ClippingShrinksTheRange()
    {
        using var x = torch.tensor(new float[] { -1f, 0.25f, 0.5f, 1f }).reshape(1, 4);
        using var dq = FakeQuantizer.QuantizeDequantize(x, QuantSpec.Weight(8, clipRatio: 0.5));
        Assert.That(TestTensors.Data(dq).Max(), Is.EqualTo(0.5f).Within(1e-6f));
        Assert.That(TestTensors.Data(dq).Min(), Is.EqualTo(-0.5f).Within(1e-6f));
    }

    [Test]
    public void FullPrecisionLeavesValuesAlone()
    {
        using var x = TestTensors.Randn(3, 4, 8);
        using var dq = FakeQuantizer.QuantizeDequantize(x, QuantSpec.FullPrecision);
        Assert.That(TestTensors.Identical(dq, x), Is.True);
    }

    [Test]
    public void AllZeroGroupsStayZeroWithoutNaN()
    {
        using var x = torch.zeros(2, 8);
        using var dq = FakeQuantizer.QuantizeDequantize(x, QuantSpec.Weight(4, symmetric: false));
        Assert.That(TestTensors.Data(dq), Is.All.EqualTo(0f));
    }

    [Test]
    public void DtypeAndShapeArePreserved()
    {
        using var x = TestTensors.Randn(5, 2, 3, 32).to(ScalarType.Float64);
        using var dq = FakeQuantizer.QuantizeDequantize(x, QuantSpec.Activation(8));
        Assert.That(dq.dtype, Is.EqualTo(ScalarType.Float64));
        Assert.That(dq.shape, Is.EqualTo(new long[] { 2, 3, 32 }));
    }

    [Test]
    public void IntegerTensorsAreRefused()
    {
        using var x = torch.ones(new long[] { 2, 4 }, dtype: ScalarType.Int32);
        Assert.Throws<ArgumentException>(() => FakeQuantizer.QuantizeDequantize(x, QuantSpec.Weight(8)).Dispose());
    }
}
