using AdaTSQ.Methods.Ptq4Dit;
using TorchSharp;
using static TorchSharp.torch;

namespace AdaTSQ.Tests.Methods.Ptq4Dit;

/// <summary>CSB: after X·B⁻¹ and W·B, activation and weight salience of every channel are equal, √(s(X)·s(W)), and XWᵀ is unchanged.</summary>
public class SalienceBalancingTests
{
    [Test]
    public void BalancingEqualizesTheSaliencesAndKeepsTheProduct()
    {
        using var scope = torch.NewDisposeScope();
        var x = TestTensors.Randn(1, 64, 48);
        var w = TestTensors.Randn(2, 16, 48);
        using (torch.no_grad())
        {
            x[.., 5].mul_(40);   // an activation outlier channel
            w[.., 11].mul_(30);  // a weight outlier channel (a different one: complementary)
        }
        var sX = x.abs().amax([0]);
        var sW = SalienceBalancing.WeightSalience(w);
        var b = SalienceBalancing.Factors(sX, sW);
        var xb = x / b;
        var wb = w * b.unsqueeze(0);
        var balancedX = xb.abs().amax([0]).to(ScalarType.Float64);
        var balancedW = wb.abs().amax([0]).to(ScalarType.Float64);
        var geometric = (sX.to(ScalarType.Float64) * sW).sqrt();
        Assert.That(TestTensors.RelativeError(balancedX, geometric), Is.LessThan(1e-6));
        Assert.That(TestTensors.RelativeError(balancedW, geometric), Is.LessThan(1e-6));
        Assert.That(TestTensors.RelativeError(xb.mm(wb.t()), x.mm(w.t())), Is.LessThan(1e-6));
        // The outlier channels are shared: the activation range shrinks, the weight's extreme column is tamed.
        Assert.That(balancedX.max().item<double>(), Is.LessThan(0.5 * sX.max().item<float>()));
        Assert.That(balancedW[11].item<double>(), Is.LessThan(0.5 * sW[11].item<double>()));
    }

    [Test]
    public void ZeroSaliencesAreFlooredAndBadInputRefused()
    {
        using var scope = torch.NewDisposeScope();
        var b = SalienceBalancing.Factors(torch.tensor(new float[] { 0, 4 }), torch.tensor(new float[] { 1, 0 }), floor: 1e-4);
        Assert.That(TestTensors.Data(b), Is.EqualTo(new[] { (float)Math.Sqrt(1e-4), (float)Math.Sqrt(4 / 1e-4) }).Within(1e-3f));
        Assert.Throws<ArgumentException>(() => SalienceBalancing.Factors(torch.ones(3), torch.ones(4)));
        Assert.Throws<ArgumentException>(() => SalienceBalancing.Factors(torch.tensor(new float[] { float.NaN }), torch.ones(1)));
        Assert.Throws<ArgumentException>(() => SalienceBalancing.Factors(torch.ones(2), torch.ones(2), floor: 0));
        Assert.Throws<ArgumentException>(() => SalienceBalancing.WeightSalience(torch.ones(3)));
    }
}
