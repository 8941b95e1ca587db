namespace AdaTSQ.Calibration;

/// <summary>The input range a layer saw at one sampling step.</summary>
/// <param name="Min">Smallest input value.</param>
/// <param name="Max">Largest input value.</param>
/// <param name="Rows">Input rows (tokens × batch) seen.</param>
public readonly record struct StepRange(double Min, double Max, long Rows)
{
    /// <summary>Largest magnitude.</summary>
    public double AbsMax => Math.Max(Math.Abs(Min), Math.Abs(Max));

    /// <summary>The range covering this one and <paramref name="other"/>.</summary>
    public StepRange Merge(StepRange other) => new(Math.Min(Min, other.Min), Math.Max(Max, other.Max), Rows + other.Rows);
}
