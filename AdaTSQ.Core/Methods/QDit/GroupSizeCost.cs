namespace AdaTSQ.Methods.QDit;

/// <summary>
/// The cost side of Q-DiT's group-size search: a candidate assignment (one group size per layer, 0 = per channel) is
/// legal when its cost (<see cref="QDitConstraint"/>) is no worse than the uniform reference assignment's.
/// </summary>
public sealed class GroupSizeCost
{
    private readonly long[] _inFeatures;
    private readonly double[] _macs;

    /// <summary>Creates the cost model.</summary>
    /// <param name="constraint">Which cost is bounded.</param>
    /// <param name="inFeatures">Each layer's input dimension K (the group of a per-channel layer).</param>
    /// <param name="macs">Each layer's multiply-accumulates per model evaluation (any common unit); used by <see cref="QDitConstraint.ScaleOperations"/>.</param>
    /// <param name="reference">The reference assignment, one group size per layer.</param>
    /// <exception cref="ArgumentException">The lists differ in length, or a value is out of range.</exception>
    public GroupSizeCost(QDitConstraint constraint, IReadOnlyList<long> inFeatures, IReadOnlyList<double> macs, IReadOnlyList<int> reference)
    {
        ArgumentNullException.ThrowIfNull(inFeatures);
        ArgumentNullException.ThrowIfNull(macs);
        ArgumentNullException.ThrowIfNull(reference);
        if (!Enum.IsDefined(constraint)) throw new ArgumentException($"constraint {(int)constraint} is not a QDitConstraint value.", nameof(constraint));
        if (macs.Count != inFeatures.Count || reference.Count != inFeatures.Count)
            throw new ArgumentException($"{inFeatures.Count} layers but {macs.Count} MAC counts and {reference.Count} reference group sizes.");
        if (inFeatures.Count == 0) throw new ArgumentException("no layers.", nameof(inFeatures));
        for (int l = 0; l < inFeatures.Count; l++)
        {
            if (inFeatures[l] <= 0) throw new ArgumentException($"layer {l}: input dimension {inFeatures[l]} must be positive.", nameof(inFeatures));
            if (!(macs[l] >= 0) || !double.IsFinite(macs[l])) throw new ArgumentException($"layer {l}: MAC count {macs[l]} must be finite and non-negative.", nameof(macs));
        }
        Constraint = constraint;
        _inFeatures = inFeatures.ToArray();
        _macs = macs.ToArray();
        Limit = Measure(reference);
    }

    /// <summary>The bounded cost.</summary>
    public QDitConstraint Constraint { get; }

    /// <summary>The reference assignment's cost, which a legal candidate may not be worse than.</summary>
    public double Limit { get; }

    /// <summary>The effective group of a layer: <paramref name="groupSize"/>, or <paramref name="inFeatures"/> for per channel (0).</summary>
    public static long Effective(int groupSize, long inFeatures) => groupSize == 0 ? inFeatures : groupSize;

    /// <summary>
    /// The cost of <paramref name="groups"/>: Σ_l MACs_l / g_l for <see cref="QDitConstraint.ScaleOperations"/> (lower is
    /// cheaper), the mean of g_l for <see cref="QDitConstraint.MeanGroupSize"/> (higher is cheaper).
    /// </summary>
    /// <exception cref="ArgumentException">Not one group size per layer, or a negative one.</exception>
    public double Measure(IReadOnlyList<int> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count != _inFeatures.Length) throw new ArgumentException($"{groups.Count} group sizes for {_inFeatures.Length} layers.", nameof(groups));
        double sum = 0;
        for (int l = 0; l < groups.Count; l++)
        {
            if (groups[l] < 0) throw new ArgumentException($"layer {l}: group size {groups[l]} must be positive or 0 (per channel).", nameof(groups));
            long g = Effective(groups[l], _inFeatures[l]);
            sum += Constraint == QDitConstraint.ScaleOperations ? _macs[l] / g : g;
        }
        return Constraint == QDitConstraint.ScaleOperations ? sum : sum / groups.Count;
    }

    /// <summary>Whether <paramref name="groups"/> is no worse than the reference (up to 1e-12 relative rounding).</summary>
    public bool IsLegal(IReadOnlyList<int> groups)
    {
        double cost = Measure(groups);
        return Constraint == QDitConstraint.ScaleOperations ? cost <= Limit * (1 + 1e-12) : cost >= Limit * (1 - 1e-12);
    }
}
