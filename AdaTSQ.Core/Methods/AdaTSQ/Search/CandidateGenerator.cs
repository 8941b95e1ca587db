namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// Makes the few layer-wise bit configurations a search stage chooses between, from the layers'
/// sensitivity (<see cref="LayerSensitivity"/>), so that the branching stays small.
/// </summary>
/// <remarks>
/// For every level <c>L</c> (a target average weight bits, e.g. 3, 3.5, 4, 5, 6, 7, 8) one candidate is
/// made. A level equal to a bit-width of the set gives the uniform config (every layer at that width). A
/// level between two consecutive widths <c>b &lt; b′</c> mixes only those two, by a greedy knapsack: start
/// with every layer at <c>b</c>, then repeatedly move to <c>b′</c> the layer with the largest score
/// reduction per added weight bit, <c>(score(b) − score(b′)) / (n_l·(b′ − b))</c> (<c>n_l</c> the layer's
/// parameters, <c>score = w_{stage,l}·E_l</c>), among the moves that keep the parameter-weighted average
/// ≤ L; stop when none fits. Ties go to the earlier layer. So the midpoint candidates put about half of the
/// parameters, the most sensitive at that stage, one width higher. Levels below the lowest width give the
/// lowest uniform config, above the highest the highest. Candidates with the same bits are made once.
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
        int low = 0;
        while (low + 1 < bits.Count && bits[low + 1] <= level) low++;
        var chosen = Enumerable.Repeat(bits[low], layers).ToArray();
        if (bits[low] < level && low + 1 < bits.Count)
        {
            int high = low + 1;
            double total = n.Sum(x => (double)x), cost = bits[low];
            var order = Enumerable.Range(0, layers)
                .Select(l => (Layer: l, Ratio: w[l] * (s.Error(l, low) - s.Error(l, high)) / (n[l] * (double)(bits[high] - bits[low])), Delta: n[l] * (double)(bits[high] - bits[low]) / total))
                .OrderByDescending(m => m.Ratio).ThenBy(m => m.Layer);
            // The ratio of a move does not depend on the other moves: taking them best-first is the greedy order.
            foreach (var move in order)
            {
                if (cost + move.Delta > level + 1e-9) continue;
                chosen[move.Layer] = bits[high];
                cost += move.Delta;
            }
        }
        return new BitCandidate(level, chosen, Enumerable.Range(0, layers).Sum(l => n[l] * (double)chosen[l]) / n.Sum(x => (double)x));
    }
}
