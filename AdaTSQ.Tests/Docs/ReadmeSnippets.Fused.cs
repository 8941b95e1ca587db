// snippet: fused
using AdaTSQ.Abstractions;
using AdaTSQ.Models;
// end snippet

namespace AdaTSQ.Tests.Docs;

public partial class ReadmeSnippets
{
    [Test]
    public void FusedLinearOpsOnAFloatLayerAreTheComposedOps()
    {
        using var fc = TorchSharp.torch.nn.Linear(16, 16);
        using var x = TestTensors.Randn(21, 2, 4, 16);
        using var shift = TestTensors.Randn(22, 2, 16);
        using var scale = TestTensors.Randn(23, 2, 16);
        using var gate = TestTensors.Randn(24, 2, 16);

        // snippet: fused
        // h = x + gate · fc(LayerNorm(x) · (1 + scale) + shift), with fc on the integer kernels when it can be
        var ops = new FusedLinearOps { LayerNorm = true, Shift = shift, Scale = scale, Residual = x, Gate = gate };
        using var h = FusedLinear.Forward(fc, x, ops);   // shift/scale/gate: [samples, features] per sample
        // end snippet

        using var normed = TorchSharp.torch.nn.functional.layer_norm(x, [16], eps: 1e-6);
        using var expected = x + gate.unsqueeze(1) * fc.call(normed * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1));
        Assert.That(TestTensors.RelativeError(h, expected), Is.LessThan(1e-6));
    }
}
