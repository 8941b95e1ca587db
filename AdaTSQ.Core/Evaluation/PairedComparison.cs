using MathNet.Numerics.Distributions;

namespace AdaTSQ.Evaluation;

/// <summary>
/// Paired comparisons of two settings evaluated on the same noise and labels (image i of one setting and
/// image i of the other start from the same x_T): the mean of the per-image differences with its t interval,
/// and McNemar's exact test on per-image class correctness. Pairing removes the variation between
/// images, which is far larger than the difference between two quantization methods.
/// </summary>
public static class PairedComparison
{
    /// <summary>
    /// Mean of b_i − a_i over the pairs where both values are finite, with the Student-t interval of that
    /// mean (<see cref="MeanInterval"/>). E.g. a = PSNR of method A, b = PSNR of method B: a positive difference
    /// favours B.
    /// </summary>
    public static PairedDifference MeanDifference(IReadOnlyList<double> a, IReadOnlyList<double> b, double level = 0.95)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Count != b.Count) throw new ArgumentException($"paired values need equal counts, got {a.Count} and {b.Count}.");
        var differences = new List<double>(a.Count);
        double sumA = 0, sumB = 0;
        for (int i = 0; i < a.Count; i++)
        {
            if (!double.IsFinite(a[i]) || !double.IsFinite(b[i])) continue;
            differences.Add(b[i] - a[i]);
            sumA += a[i];
            sumB += b[i];
        }
        if (differences.Count < 2)
            throw new ArgumentException($"only {differences.Count} of {a.Count} pairs have finite values on both sides; a paired interval needs at least 2.");
        int used = differences.Count;
        return new PairedDifference(used, a.Count - used, sumA / used, sumB / used, MeanInterval.Compute(differences, level));
    }

    /// <summary>
    /// McNemar's exact test of "A and B are equally often correct" on paired per-image outcomes: only the
    /// discordant pairs count; under the null hypothesis the number where only A is right is
    /// Binomial(onlyA + onlyB, ½). Two-sided p = min(1, 2 · P(X ≤ min(onlyA, onlyB))); p = 1 without
    /// discordant pairs.
    /// </summary>
    public static McNemarResult McNemar(IReadOnlyList<bool> a, IReadOnlyList<bool> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Count != b.Count) throw new ArgumentException($"paired outcomes need equal counts, got {a.Count} and {b.Count}.");
        int both = 0, onlyA = 0, onlyB = 0, neither = 0;
        for (int i = 0; i < a.Count; i++)
        {
            if (a[i] && b[i]) both++;
            else if (a[i]) onlyA++;
            else if (b[i]) onlyB++;
            else neither++;
        }
        return new McNemarResult(both, onlyA, onlyB, neither, McNemarExactP(onlyA, onlyB));
    }

    /// <summary>The two-sided exact McNemar p-value for the discordant counts.</summary>
    public static double McNemarExactP(int onlyA, int onlyB)
    {
        if (onlyA < 0 || onlyB < 0) throw new ArgumentOutOfRangeException(nameof(onlyA), "discordant counts cannot be negative.");
        int discordant = onlyA + onlyB;
        if (discordant == 0) return 1.0;
        return Math.Min(1.0, 2 * Binomial.CDF(0.5, discordant, Math.Min(onlyA, onlyB)));
    }
}
