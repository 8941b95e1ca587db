namespace AdaTSQ.Search;

/// <summary>
/// Makes the few layer-wise bit configurations a search stage chooses between, from the layers'
/// sensitivity (<see cref="LayerSensitivity"/>), so that the branching stays small.
/// </summary>
/// <remarks>
/// For every level <c>L</c> (a target average weight bits, e.g. 3, 3.5, 4, 5, 6, 7, 8) one candidate is
/// made by a greedy knapsack: start with every layer at the lowest bit-width; then repeatedly apply the
/// upgrade (one layer to any higher bit-width) with the largest score reduction per added weight bit,
/// <c>(score(b) − score(b′)) / (n_l·(b′ − b))</c> with <c>n_l</c> the layer's parameters and
/// <c>score = w_{stage,l}·E_l</c>, among the upgrades that keep the parameter-weighted average ≤ L;
/// stop when none fits. Ties go to the earlier layer. Levels at a bit-width of the set give mostly
/// uniform configs; levels between give mixed ones with the sensitive layers higher. Candidates with the
/// same bits are made once (the lowest level is kept).
/// </remarks>
public static class CandidateGenerator
{
    /// <summary>The candidates of a stage, ordered by increasing average bits.</summary>
    /// <param name="sensitivity">Layer scores; its <see cref="LayerSensitivity.Bits"/> are the choices.</param>
    /// <param name="parameters">Parameters of each layer (same order).</param>
    /// <param name="stageWeights">Per-layer weight of this stage (<see cref="LayerSensitivity.StageWeights"/>).</param>
    /// <param name="levels">Target average weight bits.</param>
    public static IReadOnlyList<BitCandidate> Generate(LayerSensitivity sensitivity, IReadOnlyList<long> parameters, IReadOnlyList<double> stageWeights, IReadOnlyList<double> levels)
    {
        ArgumentNullException.ThrowIfNull(sensitivity);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(stageWeights);
        ArgumentNullException.ThrowIfNull(levels);
        int layers = sensitivity.Layers.Count;
        if (parameters.Count != layers || stageWeights.Count != layers)
            throw new ArgumentException($"{parameters.Count} parameter counts and {stageWeights.Count} weights for {layers} layers.");
        var result = new List<BitCandidate>();
        foreach (double level in levels.Order())
        {
            var candidate = Allocate(sensitivity, parameters, stageWeights, level);
            if (!result.Any(c => c.SameBits(candidate))) result.Add(candidate);
        }
        return result.OrderBy(c => c.AverageWeightBits).ToList();
    }

    private static BitCandidate Allocate(LayerSensitivity s, IReadOnlyList<long> n, IReadOnlyList<double> w, double level)
    {
        var bits = s.Bits;
        int layers = n.Count;
        double total = n.Sum(x => (double)x);
        var index = new int[layers];
        double cost = n.Select(x => x * (double)bits[0]).Sum() / total;
        const double slack = 1e-9;
        while (true)
        {
            int bestLayer = -1, bestTo = -1;
            double bestRatio = double.NegativeInfinity, bestDelta = 0;
            for (int l = 0; l < layers; l++)
            {
                double now = w[l] * s.Error(l, index[l]);
                for (int to = index[l] + 1; to < bits.Count; to++)
                {
                    double delta = n[l] * (double)(bits[to] - bits[index[l]]) / total;
                    if (cost + delta > level + slack) break;
                    double ratio = (now - w[l] * s.Error(l, to)) / delta;
                    if (ratio > bestRatio)
                    {
                        bestRatio = ratio;
                        bestLayer = l;
                        bestTo = to;
                        bestDelta = delta;
                    }
                }
            }
            if (bestLayer < 0) break;
            index[bestLayer] = bestTo;
            cost += bestDelta;
        }
        var chosen = index.Select(i => bits[i]).ToArray();
        return new BitCandidate(level, chosen, Enumerable.Range(0, layers).Sum(l => n[l] * (double)chosen[l]) / total);
    }
}
