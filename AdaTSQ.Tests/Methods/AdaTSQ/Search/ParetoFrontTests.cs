using AdaTSQ.Methods.AdaTSQ.Search;

namespace AdaTSQ.Tests.Methods.AdaTSQ.Search;

public class ParetoFrontTests
{
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void KeepsExactlyTheNonDominatedPoints(int seed)
    {
        var rng = new Random(seed);
        // Coarse values so that ties in error, in cost and in both occur.
        var points = Enumerable.Range(0, 200).Select(_ => ((double)rng.Next(20), (double)rng.Next(20))).ToList();
        var kept = ParetoFront.NonDominated(points);

        bool Dominated(int i) => points.Where((_, j) => j != i).Any(q =>
            q.Item1 <= points[i].Item1 && q.Item2 <= points[i].Item2 && (q.Item1 < points[i].Item1 || q.Item2 < points[i].Item2));
        var expected = Enumerable.Range(0, points.Count).Where(i => !Dominated(i))
            .GroupBy(i => points[i]).Select(g => g.Min())      // of equal points, the first
            .OrderBy(i => points[i].Item2).ToList();
        Assert.That(kept, Is.EqualTo(expected));
        Assert.That(kept.Select(i => points[i].Item1), Is.Ordered.Descending, "by increasing cost, errors decrease");
    }

    [Test]
    public void NaNPointsAreNeverKept()
    {
        var kept = ParetoFront.NonDominated([(double.NaN, 1.0), (2.0, 2.0), (1.0, double.NaN)]);
        Assert.That(kept, Is.EqualTo(new[] { 1 }));
    }

    [Test]
    public void SpreadKeepsBothEndsAndAtMostTheCount()
    {
        var front = Enumerable.Range(10, 9).ToList();
        Assert.That(ParetoFront.Spread(front, 3), Is.EqualTo(new[] { 10, 14, 18 }));
        Assert.That(ParetoFront.Spread(front, 1), Is.EqualTo(new[] { 18 }), "one path: the most accurate");
        Assert.That(ParetoFront.Spread(front, 20), Is.EqualTo(front));
        Assert.That(ParetoFront.Spread(front, 8), Has.Count.EqualTo(8).And.Contains(10).And.Contains(18));
    }
}
