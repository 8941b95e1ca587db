namespace AdaTSQ.Methods.ViDiTQ;

/// <summary>
/// The bit allocation of ViDiT-Q's metric-decoupled mixed precision, given per-layer sensitivities measured separately
/// for each metric. The paper raises the bit-width of the layers most sensitive to each metric by a heuristic; here the
/// metrics take turns: each in turn promotes its most sensitive layer not yet promoted whose promotion still fits the
/// budget (average weight bits per parameter), until no metric can promote one. Turns, not one merged score, keep the
/// metrics decoupled: a metric with a larger scale cannot claim the whole budget.
/// </summary>
public static class MixedPrecisionAllocation
{
    /// <summary>One promotion: the layer (index) and the metric (index) whose turn promoted it.</summary>
    public readonly record struct Promotion(int Layer, int Metric);

    /// <summary>
    /// Promotes layers from <paramref name="lowBits"/> to <paramref name="highBits"/> weight bits, in order.
    /// </summary>
    /// <param name="sensitivity"><c>sensitivity[m][l]</c>: metric m's distance when layer l alone is at the low config (finite, ≥ 0).</param>
    /// <param name="parameters">Parameters (weights) of each layer, &gt; 0.</param>
    /// <param name="lowBits">Weight bits of the low config.</param>
    /// <param name="highBits">Weight bits of the high config (&gt; <paramref name="lowBits"/>).</param>
    /// <param name="budget">Average weight bits per parameter allowed (≥ <paramref name="lowBits"/>).</param>
    /// <exception cref="ArgumentException">The inputs are inconsistent (shapes, values, budget below the low bits).</exception>
    public static IReadOnlyList<Promotion> Allocate(IReadOnlyList<IReadOnlyList<double>> sensitivity, IReadOnlyList<long> parameters, int lowBits, int highBits, double budget)
    {
        ArgumentNullException.ThrowIfNull(sensitivity);
        ArgumentNullException.ThrowIfNull(parameters);
        int layers = parameters.Count;
        if (sensitivity.Count == 0 || sensitivity.Any(s => s is null || s.Count != layers))
            throw new ArgumentException($"sensitivity must be [metrics ≥ 1][{layers} layers].", nameof(sensitivity));
        if (sensitivity.SelectMany(s => s).Any(v => !double.IsFinite(v) || v < 0))
            throw new ArgumentException("sensitivities must be finite and non-negative.", nameof(sensitivity));
        if (parameters.Any(p => p <= 0)) throw new ArgumentException("every layer must have a positive parameter count.", nameof(parameters));
        if (highBits <= lowBits) throw new ArgumentException($"high bits {highBits} must exceed low bits {lowBits}.", nameof(highBits));
        if (!(budget >= lowBits)) throw new ArgumentException($"budget {budget} average weight bits is below {lowBits}, the cost of every layer at the low config.", nameof(budget));

        double total = parameters.Sum(p => (double)p);
        double room = (budget - lowBits) * total * (1 + 1e-12);   // bit·parameters left above the all-low cost
        var order = sensitivity.Select(s => Enumerable.Range(0, layers).OrderByDescending(l => s[l]).ThenBy(l => l).ToList()).ToList();
        var next = new int[sensitivity.Count];
        var promoted = new bool[layers];
        var result = new List<Promotion>();
        bool progress = true;
        while (progress)
        {
            progress = false;
            for (int m = 0; m < sensitivity.Count; m++)
            {
                // A layer skipped for its cost never fits later: the room only shrinks.
                while (next[m] < layers && (promoted[order[m][next[m]]] || (highBits - lowBits) * (double)parameters[order[m][next[m]]] > room)) next[m]++;
                if (next[m] == layers) continue;
                int l = order[m][next[m]++];
                promoted[l] = true;
                room -= (highBits - lowBits) * (double)parameters[l];
                result.Add(new Promotion(l, m));
                progress = true;
            }
        }
        return result;
    }

    /// <summary>The average weight bits per parameter when the layers of <paramref name="promotions"/> are at <paramref name="highBits"/>, the rest at <paramref name="lowBits"/>.</summary>
    public static double AverageWeightBits(IReadOnlyList<Promotion> promotions, IReadOnlyList<long> parameters, int lowBits, int highBits)
    {
        ArgumentNullException.ThrowIfNull(promotions);
        ArgumentNullException.ThrowIfNull(parameters);
        var high = promotions.Select(p => p.Layer).ToHashSet();
        double bits = parameters.Select((p, l) => (double)p * (high.Contains(l) ? highBits : lowBits)).Sum();
        return bits / parameters.Sum(p => (double)p);
    }
}
