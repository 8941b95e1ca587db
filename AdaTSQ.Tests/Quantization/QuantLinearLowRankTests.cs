using AdaTSQ.Abstractions;
using AdaTSQ.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Quantization;

/// <summary>The low-rank branch of <see cref="QuantLinear"/> (SVDQuant): where it acts and what the versions stand for.</summary>
public class QuantLinearLowRankTests
{
    private static (QuantLinear Layer, Tensor S, Tensor Up, Tensor Down) SmoothedLayerWithBranch()
    {
        torch.manual_seed(21);
        var layer = new QuantLinear("fc", nn.Linear(16, 12));
        var s = torch.linspace(0.5, 3, 16);
        var up = TestTensors.Randn(22, 12, 3) * 0.1;
        var down = TestTensors.Randn(23, 3, 16) * 0.1;
        layer.SetInputSmoothing(s);
        layer.SetLowRankBranch(up, down);
        return (layer, s, up, down);
    }

    [Test]
    public void TheQuantizedCallIsTheQuantizedResidualPlusTheBranchOnTheSmoothedInput()
    {
        var (layer, s, up, down) = SmoothedLayerWithBranch();
        using var _ = layer;
        using var x = TestTensors.Randn(24, 5, 16);
        var config = LayerQuantConfig.Create(4, 4);
        // The versions stand for R = W·diag(s) − L1·L2.
        using var r = layer.SmoothedWeight();
        using var expectedR = layer.Weight.detach() * s.unsqueeze(0) - up.mm(down);
        Assert.That(TestTensors.RelativeError(r, expectedR), Is.LessThan(1e-6));
        layer.SetWeightVersion(QuantizedTensor.Quantize(r, config.Weight));
        layer.DefaultConfig = config;
        using var y = layer.call(x);
        using var xs = x / s;
        using var qx = FakeQuantizer.QuantizeDequantize(xs, config.Activation);
        using var qr = layer.GetWeightVersion(config.Weight).Dequantize();
        using var expected = nn.functional.linear(qx, qr, layer.Bias) + xs.matmul(down.t()).matmul(up.t());
        Assert.That(TestTensors.RelativeError(y, expected), Is.LessThan(1e-6));
        // Quantized activations with a full-precision weight multiply with the residual as well.
        layer.DefaultConfig = LayerQuantConfig.Create(QuantSpec.FullPrecisionBits, 4);
        using var y2 = layer.call(x);
        using var expected2 = nn.functional.linear(qx, r, layer.Bias) + xs.matmul(down.t()).matmul(up.t());
        Assert.That(TestTensors.RelativeError(y2, expected2), Is.LessThan(1e-6));
        s.Dispose(); up.Dispose(); down.Dispose();
    }

    [Test]
    public void FullPrecisionCallsIgnoreTheBranchAndTheSplitIsExactInFloat()
    {
        torch.manual_seed(21);
        using var linear = nn.Linear(16, 12);
        using var x = TestTensors.Randn(24, 5, 16);
        using var reference = linear.call(x).detach().clone();
        var (layer, s, up, down) = SmoothedLayerWithBranch();
        using var _ = layer;
        using var same = layer.call(x);
        Assert.That(TestTensors.Identical(same, reference), Is.True, "a full-precision call is x·Wᵀ + b exactly");
        // Residual on x/s plus the branch on x/s is the original product.
        using var r = layer.SmoothedWeight();
        using var xs = x / s;
        using var branch = layer.LowRank!.Forward(xs);
        using var split = nn.functional.linear(xs, r, layer.Bias) + branch;
        Assert.That(TestTensors.RelativeError(split, reference), Is.LessThan(1e-5));
        s.Dispose(); up.Dispose(); down.Dispose();
    }

    [Test]
    public void TheBranchIsSetBeforeAnyVersionCountsInTheBytesMovesAndBlocksSmoothingChanges()
    {
        var (layer, s, up, down) = SmoothedLayerWithBranch();
        using var _ = layer;
        Assert.That(layer.LowRankBytes, Is.EqualTo((12 * 3 + 3 * 16) * 4));
        Assert.Throws<LayerQuantizationException>(() => layer.SetInputSmoothing(null), "the branch lives in the smoothed space");
        Assert.Throws<LayerQuantizationException>(() => layer.SetLowRankBranch(up, null));
        Assert.Throws<LayerQuantizationException>(() => layer.SetLowRankBranch(down, up));
        using (var w = layer.SmoothedWeight()) layer.SetWeightVersion(QuantizedTensor.Quantize(w, QuantSpec.Weight(4)));
        Assert.That(layer.QuantizedWeightBytes, Is.EqualTo(12 * 16 / 2 + 12 * 4 + layer.LowRankBytes), "W4 codes + scales + the branch");
        Assert.Throws<LayerQuantizationException>(() => layer.SetLowRankBranch(null, null), "versions are made from the residual");
        layer.to(ScalarType.Float64);
        Assert.That(layer.LowRank!.Up.dtype, Is.EqualTo(ScalarType.Float64));
        Assert.That(layer.LowRankBytes, Is.EqualTo((12 * 3 + 3 * 16) * 8));
        s.Dispose(); up.Dispose(); down.Dispose();
    }
    [Test]
    public void OnTheIntegerKernelsTheBranchRunsInsideTheIntegerCallAlsoFused()
    {
        using var noGrad = torch.no_grad();
        torch.manual_seed(26);
        using var layer = new QuantLinear("fc", nn.Linear(16, 12));
        using var up = TestTensors.Randn(22, 12, 3) * 0.1;
        using var down = TestTensors.Randn(23, 3, 16) * 0.1;
        layer.SetLowRankBranch(up, down);   // no smoothing: the branch alone
        using var x = TestTensors.Randn(25, 5, 16);
        var spec = QuantSpec.Weight(8);
        using (var w = layer.SmoothedWeight()) layer.SetWeightVersion(QuantizedTensor.Quantize(w, spec));
        layer.DefaultConfig = LayerQuantConfig.Create(8, 8);
        using var simulated = layer.call(x).clone();
        using var kernel = new IntegerLinearKernel { Strict = true };
        layer.IntegerKernel = kernel;
        using var integer = layer.call(x);
        Assert.That(kernel.IntegerCalls, Is.EqualTo(1));
        Assert.That(TestTensors.RelativeError(integer, simulated), Is.LessThan(1e-5), "GEMM and branch in one integer call");
        // The fused call runs the branch's up-projection before the GELU, inside the same integer call.
        var ops = new FusedLinearOps { Activation = FusedActivation.GeluTanh };
        using var fused = layer.ForwardFused(x, ops);
        using var composed = ops.ComposeEpilogue(simulated);
        Assert.That(TestTensors.RelativeError(fused, composed), Is.LessThan(1e-5));
        Assert.That(kernel.IntegerCalls, Is.EqualTo(2));
    }
}
