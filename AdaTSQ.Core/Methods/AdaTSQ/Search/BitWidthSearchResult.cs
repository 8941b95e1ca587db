using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>
/// What a bit-width search found: the Pareto frontier of complete dynamic policies (final error vs cost),
/// the best one under the budget, static reference policies, and what the search cost.
/// </summary>
public sealed class BitWidthSearchResult
{
    internal BitWidthSearchResult(BitWidthSearchOptions options, IReadOnlyList<string> layers, IReadOnlyList<long> parameters, int steps,
        IReadOnlyList<FrontierPoint> frontier, FrontierPoint best, IReadOnlyList<FrontierPoint> statics, long modelEvaluations, long sampleEvaluations, TimeSpan wallTime, int resumedStages,
        FrontierPoint? beamBest = null, RefinementReport? refinement = null, FrontierPoint? refined = null, int heldOutSamples = 0)
    {
        BeamBest = beamBest ?? best;
        Refined = refined;
        HeldOutSamples = heldOutSamples;
        Refinement = refinement;
        Options = options;
        Layers = layers;
        LayerParameters = parameters;
        StepCount = steps;
        Frontier = frontier;
        Best = best;
        StaticReferences = statics;
        ModelEvaluations = modelEvaluations;
        SampleEvaluations = sampleEvaluations;
        WallTime = wallTime;
        ResumedStages = resumedStages;
    }

    /// <summary>The options of the search.</summary>
    public BitWidthSearchOptions Options { get; }

    /// <summary>The searched layers, in the policies' order.</summary>
    public IReadOnlyList<string> Layers { get; }

    /// <summary>Parameters of each searched layer.</summary>
    public IReadOnlyList<long> LayerParameters { get; }

    /// <summary>Sampling steps of the trajectories.</summary>
    public int StepCount { get; }

    /// <summary>Non-dominated complete policies, by increasing cost (the budget's measure) and decreasing error.</summary>
    public IReadOnlyList<FrontierPoint> Frontier { get; }

    /// <summary>
    /// The policy the search returns: the frontier policy with the lowest final error within the budget, or, when the
    /// refinement (<see cref="BitWidthSearchOptions.RefinementRounds"/>) accepted a move, the refined policy (label
    /// "dynamic refined"; it is not in <see cref="Frontier"/>, and its errors are those of a run on its own). With held-out
    /// trajectories both choices are made by the held-out error (<see cref="FrontierPoint.SelectionMse"/>): the refined
    /// policy is returned only if it is not worse there than the beam's pick.
    /// </summary>
    public FrontierPoint Best { get; }

    /// <summary>
    /// The frontier policy with the lowest final error (on the held-out trajectories when the search had them): the
    /// beam's pick, before any refinement.
    /// </summary>
    public FrontierPoint BeamBest { get; }

    /// <summary>The refined policy, whether or not it was selected as <see cref="Best"/>; null when the refinement did not run or accepted no move.</summary>
    public FrontierPoint? Refined { get; }

    /// <summary>Number of held-out trajectories the final policy was selected on (0: selected on the search trajectories).</summary>
    public int HeldOutSamples { get; }

    /// <summary>What the refinement did; null when it did not run (<see cref="BitWidthSearchOptions.RefinementRounds"/> = 0).</summary>
    public RefinementReport? Refinement { get; }

    /// <summary>Time-constant policies at each candidate level (empty when not asked for).</summary>
    public IReadOnlyList<FrontierPoint> StaticReferences { get; }

    /// <summary>Model calls made by the search (one call evaluates a batch of samples at one step; the FP trajectory and statics included).</summary>
    public long ModelEvaluations { get; }

    /// <summary>Sample-steps evaluated (a call on a batch of n samples counts n).</summary>
    public long SampleEvaluations { get; }

    /// <summary>Wall time, summed over resumed runs.</summary>
    public TimeSpan WallTime { get; }

    /// <summary>Stages that were loaded from a saved state instead of being run (0 when not resumed).</summary>
    public int ResumedStages { get; }

    /// <summary>Frontier and static points as CSV (one row per point, invariant culture).</summary>
    public string ToCsv()
    {
        var sb = new StringBuilder("kind,label,avg_weight_bits,avg_bops,weight_memory_bytes,final_mse,final_psnr_db,held_out_mse,held_out_psnr_db\n");
        foreach (var (kind, p) in Frontier.Select(p => ("dynamic", p)).Concat(StaticReferences.Select(p => ("static", p))))
            sb.AppendLine(CultureInfo.InvariantCulture, $"{kind},\"{p.Label}\",{p.AverageWeightBits:R},{p.AverageBitOperations:R},{p.WeightMemoryBytes},{p.FinalMse:R},{p.FinalPsnr:R},{p.HeldOutMse:R},{p.HeldOutPsnr:R}");
        return sb.ToString();
    }

    /// <summary>Everything as JSON: options, costs, frontier and statics with their bits per step and layer.</summary>
    public string ToJson()
    {
        object Point(FrontierPoint p, bool best) => new
        {
            label = p.Label, best, avg_weight_bits = p.AverageWeightBits, avg_activation_bits = p.AverageActivationBits, avg_bops = p.AverageBitOperations, weight_memory_bytes = p.WeightMemoryBytes,
            final_mse = p.FinalMse, final_psnr_db = p.FinalPsnr, held_out_mse = p.HeldOutMse, held_out_psnr_db = p.HeldOutPsnr, stage_errors = p.StageErrors, step_average_bits = p.StepAverageBits,
            weight_bits = Enumerable.Range(0, StepCount).Select(s => Layers.Select(l => p.Policy[s, l].WeightBits).ToArray()),
            activation_bits = Enumerable.Range(0, StepCount).Select(s => Layers.Select(l => p.Policy[s, l].ActivationBits).ToArray()),
        };
        return JsonSerializer.Serialize(new
        {
            budget = new { kind = Options.Budget.Kind.ToString(), value = Options.Budget.Value },
            axis = Options.Axis.ToString(), searched_bits = Options.SearchedBits, weight_bits = Options.WeightBits, paired_activation_bits = Options.PairActivationBits, activation_spec = Options.ActivationSpec.ToString(),
            weight_spec = Options.WeightSpec.ToString(), beam_width = Options.BeamWidth, steps_per_stage = Options.StepsPerStage, levels = Options.Levels(),
            steps = StepCount, layers = Layers, layer_parameters = LayerParameters,
            wall_time_seconds = WallTime.TotalSeconds, model_evaluations = ModelEvaluations, sample_evaluations = SampleEvaluations, resumed_stages = ResumedStages,
            sensitivity = Options.Sensitivity.ToString(), held_out_samples = HeldOutSamples,
            frontier = Frontier.Select(p => Point(p, ReferenceEquals(p, Best))), statics = StaticReferences.Select(p => Point(p, false)),
            refinement = Refinement is not { } r ? null : new
            {
                rounds = r.Rounds, moves_evaluated = r.MovesEvaluated, start_mse = r.StartMse, final_mse = r.FinalMse, converged = r.Converged,
                model_evaluations = r.ModelEvaluations, wall_time_seconds = r.WallTime.TotalSeconds,
                neighbourhood = Options.RefinementNeighbourhood.ToString(), moves_per_round = Options.RefinementMovesPerRound, seed = Options.RefinementSeed,
                accepted = r.Accepted.Select(m => m.Select(c => new { stage = c.Stage, layer = c.Layer, from_bits = c.FromBits, to_bits = c.ToBits })),
                refined = Refined is null ? null : Point(Refined, ReferenceEquals(Refined, Best)),
            },
        }, new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>A plain-text summary: the frontier, the best policy, the statics and the search cost.</summary>
    public string FormatSummary()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Bit-width search ({Options.Budget}, beam {Options.BeamWidth}, {(Options.Axis == SearchAxis.ActivationBits ? $"activation bits {string.Join("/", Options.ActivationBits)} at {Options.WeightSpec}" : $"bits {string.Join("/", Options.WeightBits)}")}{(Options.PairActivationBits ? " paired W=A" : "")}): {WallTime.TotalSeconds:F1} s, {ModelEvaluations:N0} model calls, {SampleEvaluations:N0} sample-steps");
        bool heldOut = HeldOutSamples > 0;
        sb.AppendLine((Options.Axis == SearchAxis.ActivationBits ? "  kind     avg A bits" : "  kind     avg W bits") + "   GBOPs/sample   weights (KB)   final MSE    PSNR (dB)" + (heldOut ? $"   held-out MSE   held-out PSNR ({HeldOutSamples} samples)" : ""));
        var rows = Frontier.Select(p => (ReferenceEquals(p, Best) ? "best" : "dynamic", p));
        if (Refined is not null) rows = rows.Append((ReferenceEquals(Refined, Best) ? "refined" : "refined*", Refined));
        foreach (var (kind, p) in rows.Concat(StaticReferences.Select(p => ("static", p))))
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {kind,-8} {p.AverageActivationBits ?? p.AverageWeightBits,10:F3}   {p.AverageBitOperations / 1e9,12:F3}   {p.WeightMemoryBytes / 1024.0,12:F1}   {p.FinalMse,9:E2}   {p.FinalPsnr,9:F2}") +
                (heldOut ? string.Create(CultureInfo.InvariantCulture, $"   {p.HeldOutMse,12:E2}   {p.HeldOutPsnr,13:F2}") : ""));
        if (Refined is not null && !ReferenceEquals(Refined, Best))
            sb.AppendLine("  * the refined policy is not selected: it is worse than the beam's pick on the held-out trajectories");
        if (Refinement is { } r)
            sb.AppendLine(CultureInfo.InvariantCulture, $"  refinement: {r.Rounds} rounds, {r.MovesEvaluated:N0} moves evaluated, {r.Accepted.Count} accepted; final MSE {r.StartMse:E3} → {r.FinalMse:E3}{(r.Converged ? " (local optimum)" : "")}; {r.WallTime.TotalSeconds:F1} s, {r.ModelEvaluations:N0} model calls");
        return sb.ToString();
    }
}
