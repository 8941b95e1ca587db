using AdaTSQ.Abstractions;

namespace AdaTSQ.Tests.Abstractions;

public class TimestepContextTests
{
    [Test]
    public void ScopesNestAndRestore()
    {
        Assert.That(TimestepContext.Current, Is.Null);
        using (TimestepContext.Enter(new TimestepInfo(0, 10, 999)))
        {
            using (TimestepContext.Enter(new TimestepInfo(9, 10, 0)))
                Assert.That(TimestepContext.Current?.StepIndex, Is.EqualTo(9));
            Assert.That(TimestepContext.Current?.StepIndex, Is.EqualTo(0));
        }
        Assert.That(TimestepContext.Current, Is.Null);
    }

    [Test]
    public async Task ParallelFlowsSeeTheirOwnStep()
    {
        async Task<int> Flow(int step)
        {
            using var _ = TimestepContext.Enter(new TimestepInfo(step, 50, step));
            await Task.Delay(20);
            return TimestepContext.Current!.Value.StepIndex;
        }
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(Flow));
        Assert.That(results, Is.EqualTo(Enumerable.Range(0, 8)));
    }

    [Test]
    public void StepOutsideTheTrajectoryIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TimestepContext.Enter(new TimestepInfo(10, 10, 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => TimestepContext.Enter(new TimestepInfo(0, 0, 0)));
        Assert.That(new TimestepInfo(4, 5, 0).Progress, Is.EqualTo(1.0));
    }
}
