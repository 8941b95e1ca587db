using AdaTSQ.Policies;
using static AdaTSQ.Tests.Policies.PolicyFixtures;

namespace AdaTSQ.Tests.Policies;

public class DynamicTimestepPolicyTests
{
    [Test]
    public void OtherStepCountsAreMappedByPositionInTheTrajectory()
    {
        var d = Dynamic(50);
        Assert.That(d.MapStep(Step(17, 50)), Is.EqualTo(17), "same step count: the step itself");
        Assert.That(d.MapStep(Step(0, 25)), Is.EqualTo(0));
        Assert.That(d.MapStep(Step(24, 25)), Is.EqualTo(49), "the last step meets the last step");
        Assert.That(d.MapStep(Step(12, 25)), Is.EqualTo(25), "12/24·49 = 24.5 rounds away from zero");
        Assert.That(d.MapStep(Step(1, 100)), Is.EqualTo(0), "1/99·49 = 0.49");
        Assert.That(d.MapStep(Step(0, 1)), Is.EqualTo(0), "a one-step sampler uses the first step");
        // Resolve goes through the mapping: step 12 of 25 is the policy's step 25.
        Assert.That(d.Resolve("head", Step(12, 25)), Is.EqualTo(d[25, "head"]));
        Assert.That(d.Resolve("head", Step(12, 25)), Is.Not.EqualTo(d[24, "head"]), "neighbouring steps differ in this policy");
    }

    [Test]
    public void StepLessCallsUseTheMostPreciseConfigAndOtherLayersTheirOwn()
    {
        var d = Dynamic();
        Assert.That(d.Resolve("head", null), Is.EqualTo(W8A8));
        Assert.That(d.Resolve("elsewhere", Step(3, 6)), Is.EqualTo(W6A8));
        Assert.That(d.ConfigsFor("head"), Is.EquivalentTo(new[] { W4A8, W8A8, Odd }));
        Assert.That(d.ConfigsFor("elsewhere"), Is.EquivalentTo(new[] { W6A8 }));
        Assert.That(d.NamedLayers, Is.EquivalentTo(Layers));
    }
}
