using AdaTSQ.Methods.Htg;
using TorchSharp;

namespace AdaTSQ.Tests.Methods.Htg;

/// <summary>HTG's hierarchical timestep grouping on sequences with a known answer.</summary>
public class HtgClusteringTests
{
    private static double[][] Scalars(params double[] values) => values.Select(v => new[] { v }).ToArray();

    [Test]
    public void ThreePlateausGiveThreeGroups()
    {
        var groups = HtgClustering.Cluster(Scalars(0, 0.1, 0.2, 5, 5.1, 10, 10.2, 10.1), 3);
        Assert.That(groups, Is.EqualTo(new[] { (0, 2), (3, 4), (5, 7) }));
    }

    [Test]
    public void MergesByCentroidNotByNearestMember()
    {
        // Adjacent distances 1, 1, 1.44: the tie goes to the earliest pair, {0, 1} (centroid 0.5). Then the centroid
        // distance to 2 is 2.25 > 1.44, so 2 and 3.2 merge; single linkage (nearest members, distance 1) would have put 2
        // into the first group instead.
        var groups = HtgClustering.Cluster(Scalars(0, 1, 2, 3.2), 2);
        Assert.That(groups, Is.EqualTo(new[] { (0, 1), (2, 3) }));
    }

    [Test]
    public void DistanceIsSquaredL2OverAllChannels()
    {
        // Channel 1 separates the steps into {0, 1} and {2, 3}; channel 0 alone would split {0} | {1, 2, 3}.
        var v = new[] { new[] { 0.0, 0.0 }, new[] { 3.0, 0.0 }, new[] { 3.0, 10.0 }, new[] { 3.0, 10.0 } };
        Assert.That(HtgClustering.Cluster(v, 2), Is.EqualTo(new[] { (0, 1), (2, 3) }));
    }

    [Test]
    public void AsManyGroupsAsStepsLeavesSingletonsAndOneGroupTakesAll()
    {
        Assert.That(HtgClustering.Cluster(Scalars(3, 1, 2), 5), Is.EqualTo(new[] { (0, 0), (1, 1), (2, 2) }));
        Assert.That(HtgClustering.Cluster(Scalars(3, 1, 2), 1), Is.EqualTo(new[] { (0, 2) }));
    }

    [Test]
    public void TensorRowsAreSteps()
    {
        using var z = torch.tensor(new float[] { 0, 0, 0.1f, 0, 7, 7, 7.2f, 7 }).reshape(4, 2);
        Assert.That(HtgClustering.Cluster(z, 2), Is.EqualTo(new[] { (0, 1), (2, 3) }));
    }
}
