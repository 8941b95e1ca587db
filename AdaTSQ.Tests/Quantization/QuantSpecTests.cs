using AdaTSQ.Quantization;

namespace AdaTSQ.Tests.Quantization;

public class QuantSpecTests
{
    [TestCase(1)]
    [TestCase(9)]
    [TestCase(12)]
    [TestCase(32)]
    public void BitsOutsideTwoToEightAreRejected(int bits)
    {
        var error = Assert.Throws<QuantSpecException>(() => QuantSpec.Weight(bits).Validate(QuantTarget.Weight))!;
        Assert.That(error.Message, Does.Contain($"bits = {bits}"));
    }

    [TestCase(2)]
    [TestCase(8)]
    [TestCase(16)]
    public void SupportedBitsAreAccepted(int bits) =>
        Assert.That(QuantSpec.Weight(bits).FindProblems(QuantTarget.Weight, 64), Is.Empty);

    [Test]
    public void GroupThatDoesNotDivideTheInputIsRejectedWithBothNumbers()
    {
        var error = Assert.Throws<QuantSpecException>(() => QuantSpec.Weight(4, groupSize: 48).Validate(QuantTarget.Weight, 64, "layer 'fc1'"))!;
        Assert.That(error.Message, Does.Contain("fc1").And.Contain("48").And.Contain("64"));
    }

    [Test]
    public void GranularityMustFitTheRole()
    {
        var perTokenWeight = new QuantSpec { Bits = 8, Granularity = QuantGranularity.PerToken };
        Assert.That(perTokenWeight.FindProblems(QuantTarget.Weight), Has.One.Contains("PerToken"));
        var perChannelActivation = new QuantSpec { Bits = 8, Granularity = QuantGranularity.PerChannel };
        Assert.That(perChannelActivation.FindProblems(QuantTarget.Activation), Has.One.Contains("PerChannel"));
        var staticPerToken = new QuantSpec { Bits = 8, Granularity = QuantGranularity.PerToken, Dynamic = false };
        Assert.That(staticPerToken.FindProblems(QuantTarget.Activation), Has.One.Contains("static"));
        Assert.That(QuantSpec.Activation(8, dynamic: false).FindProblems(QuantTarget.Activation), Is.Empty);
    }

    [Test]
    public void EveryProblemIsListedAtOnce()
    {
        var spec = new QuantSpec { Bits = 11, Granularity = QuantGranularity.PerGroup, GroupSize = 0, ClipRatio = 1.5 };
        var error = Assert.Throws<QuantSpecException>(() => spec.Validate(QuantTarget.Weight))!;
        Assert.That(error.Problems, Has.Count.EqualTo(3));
        Assert.That(error.Message, Does.Contain("bits = 11").And.Contain("GroupSize").And.Contain("clip ratio 1.5"));
    }

    [Test]
    public void GridsAreTheDocumentedOnes()
    {
        Assert.That((QuantSpec.Weight(4).QMin, QuantSpec.Weight(4).QMax), Is.EqualTo((-7, 7)));
        Assert.That((QuantSpec.Weight(8).QMin, QuantSpec.Weight(8).QMax), Is.EqualTo((-127, 127)));
        var asym = QuantSpec.Weight(3, symmetric: false);
        Assert.That((asym.QMin, asym.QMax), Is.EqualTo((0, 7)));
    }

    [Test]
    public void LabelsAreShortAndDistinct()
    {
        Assert.That(QuantSpec.Weight(4, 64).ToString(), Is.EqualTo("int4 g64 sym"));
        Assert.That(QuantSpec.Activation(8).ToString(), Is.EqualTo("int8 per-token sym"));
        Assert.That(QuantSpec.Activation(8, dynamic: false).ToString(), Is.EqualTo("int8 per-tensor sym static"));
        Assert.That(LayerQuantConfig.Create(4, 8).ToString(), Is.EqualTo("W4A8"));
    }
}
