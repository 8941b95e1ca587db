namespace AdaTSQ.Evaluation.Comparison;

/// <summary>
/// A method against one baseline at one bit setting, on mean PSNR against the reference (the figure every cell
/// has per image, so it can be paired).
/// </summary>
/// <param name="Method">The method judged (e.g. adatsq).</param>
/// <param name="Baseline">The baseline it is judged against.</param>
/// <param name="Bits">The bit setting.</param>
/// <param name="Outcome">Win, tie, loss, or unavailable.</param>
/// <param name="Paired">Paired ΔPSNR = method − baseline over the same images (null when unavailable).</param>
public sealed record ComparisonVerdict(string Method, string Baseline, string Bits, VerdictOutcome Outcome, PairedDifference? Paired)
{
    /// <summary>
    /// The rule: a win only when the two cells' PSNR intervals are disjoint with the method above, and the paired
    /// ΔPSNR interval (method − baseline) excludes 0 on the positive side; a loss the same way round; otherwise a
    /// tie. Pairing alone is not enough: a consistent 0.1 dB gain on every image is a tie while the per-cell
    /// intervals overlap.
    /// </summary>
    public static VerdictOutcome Decide(ConfidenceInterval method, ConfidenceInterval baseline, ConfidenceInterval pairedDifference)
    {
        if (method.Lower > baseline.Upper && pairedDifference.Lower > 0) return VerdictOutcome.Win;
        if (method.Upper < baseline.Lower && pairedDifference.Upper < 0) return VerdictOutcome.Loss;
        return VerdictOutcome.Tie;
    }
}
