using AdaTSQ.Policies;
using static AdaTSQ.Tests.Policies.PolicyFixtures;

namespace AdaTSQ.Tests.Policies;

public class TimeGroupedTimestepPolicyTests
{
    [Test]
    public void GroupsMustCoverTheStepsContiguouslyWithoutOverlap()
    {
        static string Error(params TimestepGroup[] groups) => Assert.Throws<ArgumentException>(() => new TimeGroupedTimestepPolicy(groups))!.Message;
        Assert.That(Error(new(0, 1, new(W4A8)), new(3, 4, new(W8A8))), Does.Contain("steps 2…2 are in no group"));
        Assert.That(Error(new TimestepGroup(1, 4, new(W4A8))), Does.Contain("steps 0…0 are in no group"));
        Assert.That(Error(new(0, 2, new(W4A8)), new(2, 4, new(W8A8))), Does.Contain("0…2 and 2…4 overlap (steps 2…2)"));
        Assert.That(Error(new(0, 4, new(W4A8)), new(1, 2, new(W8A8))), Does.Contain("0…4 and 1…2 overlap (steps 1…2)"));
        Assert.That(Error(new TimestepGroup(-1, 4, new(W4A8))), Does.Contain("starts before step 0"));
        Assert.That(Error(new(0, 2, new(W4A8)), new(3, 2, new(W8A8))), Does.Contain("3…2 ends before it starts"));
        Assert.That(Error(), Does.Contain("at least one group"));
        // Order does not matter.
        Assert.That(new TimeGroupedTimestepPolicy([new(3, 4, new(W8A8)), new(0, 2, new(W4A8))]).StepCount, Is.EqualTo(5));
    }

    [Test]
    public void StepsResolveToTheirGroupAndOtherStepCountsMapByPosition()
    {
        var g = Grouped();
        Assert.That(g.StepCount, Is.EqualTo(6));
        string[] expectedFc1 = ["W4A8", "W4A8", "W8A8", "W8A8", "W8A8", "W3A6"];
        Assert.That(Enumerable.Range(0, 6).Select(k => g.Resolve("blocks.0.mlp.fc1", Step(k, 6)).ToString()), Is.EqualTo(expectedFc1));
        Assert.That(g.Resolve("head", Step(3, 6)), Is.EqualTo(Odd), "the group's override");
        // An 11-step sampler: step k uses the policy's step round(k/10·5), halves away from zero.
        Assert.That(Enumerable.Range(0, 11).Select(k => g.MapStep(Step(k, 11))), Is.EqualTo(new[] { 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5 }));
        Assert.That(g.Resolve("blocks.0.mlp.fc1", Step(2, 11)), Is.EqualTo(W4A8));
        Assert.That(g.Resolve("blocks.0.mlp.fc1", Step(5, 11)), Is.EqualTo(W8A8));
        Assert.That(g.Resolve("blocks.0.mlp.fc1", Step(10, 11)), Is.EqualTo(Odd));
        Assert.That(g.GroupAt(Step(7, 11)).FirstStep, Is.EqualTo(2));
    }

    [Test]
    public void StepLessCallsUseTheMostPreciseConfigAndConfigsForListsTheDistinctOnes()
    {
        var g = Grouped();
        Assert.That(g.Resolve("blocks.0.mlp.fc1", null), Is.EqualTo(W8A8));
        Assert.That(g.Resolve("head", null), Is.EqualTo(W4A8), "head is W4A8, Odd (W3), Odd: W4 is the most precise");
        Assert.That(g.Resolve("head", null), Is.EqualTo(W4A8), "the cached answer is the same");
        Assert.That(g.ConfigsFor("head"), Is.EquivalentTo(new[] { W4A8, Odd }));
        Assert.That(g.ConfigsFor("blocks.0.attn.qkv"), Is.EquivalentTo(new[] { W4A8, W8A8, Odd }));
        Assert.That(g.NamedLayers, Is.EquivalentTo(new[] { "head" }));
    }

    [Test]
    public void EvenSplitsTheStepsIntoConsecutiveGroupsInOrder()
    {
        var even = TimeGroupedTimestepPolicy.Even(10, [new(W4A8), new(W8A8), new(Odd)]);
        Assert.That(even.Groups.Select(x => (x.FirstStep, x.LastStep)), Is.EqualTo(new[] { (0, 3), (4, 6), (7, 9) }));
        Assert.That(even.Groups.Select(x => x.Policy.DefaultConfig), Is.EqualTo(new[] { W4A8, W8A8, Odd }));
        Assert.That(TimeGroupedTimestepPolicy.Even(50, [new(W4A8), new(W8A8)]).Groups.Select(x => x.LastStep), Is.EqualTo(new[] { 24, 49 }));
        Assert.Throws<ArgumentException>(() => TimeGroupedTimestepPolicy.Even(2, [new(W4A8), new(W8A8), new(Odd)]));
        Assert.Throws<ArgumentException>(() => TimeGroupedTimestepPolicy.Even(5, Array.Empty<StaticTimestepPolicy>()));
    }
}
