using AdaTSQ.Calibration;
namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>
/// How temporal Fisher values become step weights α. With Fisher values <c>F_t ≥ 0</c> over the
/// <c>T</c> sampling steps: <c>a_t = F_t^(1/τ)</c>, then
/// <c>α_t = floor + (1 − floor) · a_t / mean(a)</c>. So <c>mean(α) = 1</c> exactly (α keeps the scale of
/// an unweighted Hessian), <c>α_t ≥ floor</c>, the order of the steps is kept, τ → ∞ gives uniform
/// weights and τ &lt; 1 sharpens them. All-zero Fisher values give α = 1 everywhere.
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

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
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
        // Scale by the maximum first so that F^(1/τ) neither under- nor overflows.
        double max = fisher.Max();
        if (max <= 0) return Enumerable.Repeat(1.0, fisher.Count).ToArray();
        var a = fisher.Select(f => Math.Pow(f / max, 1 / Temperature)).ToArray();
        double mean = a.Average();
        return a.Select(v => Floor + (1 - Floor) * v / mean).ToArray();
    }
}
