namespace AdaTSQ.Evaluation;

/// <summary>
/// A point estimate with a two-sided confidence interval [<see cref="Lower"/>, <see cref="Upper"/>] at
/// <see cref="Level"/> (0.95 = 95 %), and the method that produced the interval.
/// </summary>
/// <param name="Estimate">The statistic on the full sample.</param>
/// <param name="Lower">Lower end of the interval (NaN when no interval could be formed).</param>
/// <param name="Upper">Upper end of the interval (NaN when no interval could be formed).</param>
/// <param name="Level">Coverage, e.g. 0.95.</param>
/// <param name="Method">How the interval was made, e.g. "percentile bootstrap, 1000 resamples, seed 0" or "t".</param>
public readonly record struct ConfidenceInterval(double Estimate, double Lower, double Upper, double Level, string Method)
{
    /// <summary>Half the interval's width; for a symmetric interval the "±" figure.</summary>
    public double HalfWidth => (Upper - Lower) / 2;

    /// <summary>Whether <paramref name="value"/> lies in the closed interval.</summary>
    public bool Contains(double value) => value >= Lower && value <= Upper;
}
