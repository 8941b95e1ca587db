namespace AdaTSQ.Evaluation;

/// <summary>The 2 × 2 table of paired per-image correctness and McNemar's exact two-sided p-value.</summary>
/// <param name="Both">Both correct.</param>
/// <param name="OnlyA">Only A correct.</param>
/// <param name="OnlyB">Only B correct.</param>
/// <param name="Neither">Neither correct.</param>
/// <param name="PValue">Exact two-sided p-value (binomial on the OnlyA + OnlyB discordant pairs).</param>
public sealed record McNemarResult(int Both, int OnlyA, int OnlyB, int Neither, double PValue)
{
    /// <summary>Number of pairs.</summary>
    public int Count => Both + OnlyA + OnlyB + Neither;

    /// <summary>Accuracy of B minus accuracy of A.</summary>
    public double AccuracyDifference => Count == 0 ? double.NaN : (double)(OnlyB - OnlyA) / Count;
}
