namespace AdaTSQ.Evaluation.Comparison;

/// <summary>How a method fares against a baseline at one bit setting.</summary>
public enum VerdictOutcome
{
    /// <summary>Better: the PSNR intervals do not overlap and the paired ΔPSNR interval lies above 0.</summary>
    Win,

    /// <summary>Not separated: the intervals overlap, or the paired interval contains 0.</summary>
    Tie,

    /// <summary>Worse: the PSNR intervals do not overlap and the paired ΔPSNR interval lies below 0.</summary>
    Loss,

    /// <summary>One of the two cells failed or is missing.</summary>
    Unavailable,
}
