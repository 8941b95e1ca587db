namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>Pareto selection on (error, cost), both to be minimized.</summary>
public static class ParetoFront
{
    /// <summary>
    /// Indices of the non-dominated points, ordered by increasing cost (hence decreasing error). A point is
    /// dominated when another has error ≤ and cost ≤ with at least one strictly smaller. Of points equal in
    /// both, only the first (lowest index) is kept. NaN errors or costs are dominated by everything.
    /// </summary>
    public static IReadOnlyList<int> NonDominated(IReadOnlyList<(double Error, double Cost)> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        var order = Enumerable.Range(0, points.Count)
            .Where(i => !double.IsNaN(points[i].Error) && !double.IsNaN(points[i].Cost))
            .OrderBy(i => points[i].Cost).ThenBy(i => points[i].Error).ThenBy(i => i).ToList();
        var kept = new List<int>();
        double best = double.PositiveInfinity;
        foreach (int i in order)
        {
            if (points[i].Error < best)
            {
                kept.Add(i);
                best = points[i].Error;
            }
        }
        return kept;
    }

    /// <summary>
    /// At most <paramref name="count"/> of a front ordered by cost, spread evenly over it: position
    /// round(j·(n−1)/(count−1)) for j = 0…count−1, so the cheapest and the most accurate points are always
    /// kept (with <paramref name="count"/> = 1, only the most accurate).
    /// </summary>
    public static IReadOnlyList<int> Spread(IReadOnlyList<int> front, int count)
    {
        ArgumentNullException.ThrowIfNull(front);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        if (front.Count <= count) return front;
        if (count == 1) return [front[^1]];
        var picked = new SortedSet<int>();
        for (int j = 0; j < count; j++)
            picked.Add((int)Math.Round((double)j * (front.Count - 1) / (count - 1), MidpointRounding.AwayFromZero));
        return picked.Select(p => front[p]).ToList();
    }
}
