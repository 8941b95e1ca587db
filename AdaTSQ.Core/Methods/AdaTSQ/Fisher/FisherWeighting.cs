using AdaTSQ.Calibration;
namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>
/// How temporal Fisher values become step weights α. With Fisher values <c>F_t ≥ 0</c> over the
/// <c>T</c> sampling steps: a score <c>g_t</c> from the <see cref="Normalization"/> (<c>F_t</c> itself for
/// <see cref="FisherNormalization.Power"/>, the default; <c>log(1 + F_t/median F)</c> for
/// <see cref="FisherNormalization.Log"/>; <c>rank(F_t)/T</c> for <see cref="FisherNormalization.Rank"/>),
/// <c>a_t = g_t^(1/τ)</c>, then <c>α_t = floor + (1 − floor) · a_t / mean(a)</c>. So <c>mean(α) = 1</c> exactly
/// (α keeps the scale of an unweighted Hessian), <c>α_t ≥ floor</c>, the order of the steps is kept, τ → ∞ gives
/// uniform weights and τ &lt; 1 sharpens them. All-zero Fisher values give α = 1 everywhere.
/// </summary>
public sealed record FisherWeighting
{
    /// <summary>Temperature τ &gt; 0 (default 1: α proportional to F above the floor).</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Smallest weight, in [0, 1) (default 0.1: no step's data is ignored entirely).</summary>
    public double Floor { get; init; } = 0.1;

    /// <summary>
    /// True: each layer gets its own α over steps from its own Fisher values (the paper's α_{t,l});
    /// false: every layer uses the α of the per-step Fisher summed over layers. Default true.
    /// </summary>
    public bool PerLayer { get; init; } = true;

    /// <summary>
    /// How F becomes the score g_t before the temperature (default <see cref="FisherNormalization.Power"/>: g = F, the
    /// paper's proportional weights).
    /// </summary>
    public FisherNormalization Normalization { get; init; } = FisherNormalization.Power;

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        if (!Enum.IsDefined(Normalization)) p.Add($"Fisher normalization {(int)Normalization} is not one of {string.Join(", ", Enum.GetNames<FisherNormalization>())}.");
        if (!(Temperature > 0) || double.IsInfinity(Temperature)) p.Add($"Fisher temperature {Temperature} must be a positive finite number.");
        if (!(Floor >= 0 && Floor < 1)) p.Add($"Fisher weight floor {Floor} must be in [0, 1).");
        return p;
    }

    /// <summary>α for the Fisher values <paramref name="fisher"/> (one per step).</summary>
    /// <exception cref="ArgumentException">A value is negative or not finite, or the options are invalid.</exception>
    public double[] Normalize(IReadOnlyList<double> fisher)
    {
        ArgumentNullException.ThrowIfNull(fisher);
        var problems = FindProblems();
        if (problems.Count > 0) throw new ArgumentException(string.Join(" ", problems));
        if (fisher.Count == 0) return [];
        for (int i = 0; i < fisher.Count; i++)
            if (!(fisher[i] >= 0) || double.IsInfinity(fisher[i]))
                throw new ArgumentException($"Fisher value {fisher[i]} at step {i} is not a finite non-negative number.", nameof(fisher));
        double max = fisher.Max();
        if (max <= 0) return Enumerable.Repeat(1.0, fisher.Count).ToArray();
        var a = Normalization switch
        {
            // Scale by the maximum first so that F^(1/τ) neither under- nor overflows.
            FisherNormalization.Power => fisher.Select(f => Math.Pow(f / max, 1 / Temperature)).ToArray(),
            FisherNormalization.Log => LogScores(fisher).Select(g => Math.Pow(g, 1 / Temperature)).ToArray(),
            _ => RankScores(fisher).Select(g => Math.Pow(g, 1 / Temperature)).ToArray(),
        };
        double mean = a.Average();
        return a.Select(v => Floor + (1 - Floor) * v / mean).ToArray();
    }

    /// <summary>log(1 + F_t / m), m the median of the positive values (some value is positive when this is called).</summary>
    private static double[] LogScores(IReadOnlyList<double> fisher)
    {
        var positive = fisher.Where(f => f > 0).Order().ToArray();
        int n = positive.Length;
        double median = n % 2 == 1 ? positive[n / 2] : positive[n / 2 - 1] / 2 + positive[n / 2] / 2;
        // log1p: exact for the tiny ratios of steps far below the median (log(1 + x) would round them to 0).
        return fisher.Select(f => LogOnePlus(f / median)).ToArray();
    }

    private static double LogOnePlus(double x) => x < 1e-4 ? x - x * x / 2 + x * x * x / 3 : Math.Log(1 + x);

    /// <summary>rank(F_t) / T with ranks 1 … T from the smallest value; tied values get their mean rank.</summary>
    private static double[] RankScores(IReadOnlyList<double> fisher)
    {
        int n = fisher.Count;
        var order = Enumerable.Range(0, n).OrderBy(i => fisher[i]).ToArray();
        var scores = new double[n];
        for (int start = 0; start < n;)
        {
            int end = start;
            while (end + 1 < n && fisher[order[end + 1]] == fisher[order[start]]) end++;
            double rank = (start + end) / 2.0 + 1;          // mean of the ranks start+1 … end+1
            for (int j = start; j <= end; j++) scores[order[j]] = rank / n;
            start = end + 1;
        }
        return scores;
    }
}
