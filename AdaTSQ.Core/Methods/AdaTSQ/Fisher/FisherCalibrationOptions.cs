using AdaTSQ.Calibration;
namespace AdaTSQ.Methods.AdaTSQ.Fisher;

/// <summary>How <see cref="FisherCalibrator"/> uses the temporal Fisher weights α.</summary>
public enum FisherUse
{
    /// <summary>Every step's data enters the Hessian, weighted by α: <c>H' = Σ_t α_t X_t X_tᵀ</c>.</summary>
    Weight,

    /// <summary>
    /// Importance sampling: a budget of steps is drawn with probability ∝ the whole model's α (of
    /// Σ_l F; systematic sampling, seeded; a step drawn twice counts twice) and only their data enter
    /// the Hessian, unweighted.
    /// </summary>
    Sample,

    /// <summary>Steps drawn as in <see cref="Sample"/>, each weighted by its α.</summary>
    Both,
}

/// <summary>Options of <see cref="FisherCalibrator"/>.</summary>
public sealed record FisherCalibrationOptions
{
    /// <summary>How Fisher values become α. Default: τ = 1, floor 0.1, per layer.</summary>
    public FisherWeighting Weighting { get; init; } = new();

    /// <summary>Weighting, importance sampling, or both. Default <see cref="FisherUse.Weight"/>.</summary>
    public FisherUse Use { get; init; } = FisherUse.Weight;

    /// <summary>
    /// The calibration budget for <see cref="FisherUse.Sample"/>/<see cref="FisherUse.Both"/>: the number
    /// of step draws as a fraction of the number of sampling steps (default 0.25). Ignored for
    /// <see cref="FisherUse.Weight"/>.
    /// </summary>
    public double StepFraction { get; init; } = 0.25;

    /// <summary>Seed of the step draws. Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>(Weighting?.FindProblems() ?? ["Fisher weighting must not be null."]);
        if (!(StepFraction > 0 && StepFraction <= 1)) p.Add($"Fisher step fraction {StepFraction} must be in (0, 1].");
        return p;
    }
}
