using AdaTSQ.Calibration;
using AdaTSQ.Quantization;
using AdaTSQ.Methods.AdaTSQ.Fisher;

namespace AdaTSQ.Methods.AdaTSQ.Search;

/// <summary>Options of <see cref="BitWidthSearch"/>; the defaults are documented on each member.</summary>
public sealed record BitWidthSearchOptions
{
    /// <summary>The weight bit-widths a layer may take at a step. Default {3, 4, 6, 8}.</summary>
    public IReadOnlyList<int> WeightBits { get; init; } = [3, 4, 6, 8];

    /// <summary>The weight spec whose <see cref="QuantSpec.Bits"/> the search varies. Default per-channel symmetric.</summary>
    public QuantSpec WeightSpec { get; init; } = QuantSpec.Weight(8);

    /// <summary>
    /// The activation spec of every config (default dynamic per-token int8); with
    /// <see cref="PairActivationBits"/> its bits follow the weight bits (W≈A).
    /// </summary>
    public QuantSpec ActivationSpec { get; init; } = QuantSpec.Activation(8);

    /// <summary>Which bit-width the search varies. Default <see cref="SearchAxis.WeightBits"/>.</summary>
    public SearchAxis Axis { get; init; } = SearchAxis.WeightBits;

    /// <summary>
    /// The activation bit-widths a layer may take at a step with <see cref="SearchAxis.ActivationBits"/> (16 = unquantized
    /// activations). Default {4, 8}. Unused on the weight axis.
    /// </summary>
    public IReadOnlyList<int> ActivationBits { get; init; } = [4, 8];

    /// <summary>The searched widths: <see cref="WeightBits"/>, or <see cref="ActivationBits"/> on the activation axis.</summary>
    public IReadOnlyList<int> SearchedBits => Axis == SearchAxis.ActivationBits ? ActivationBits : WeightBits;

    /// <summary>True: activation bits = weight bits (W4A4, W6A6, …); false: the activation spec's bits always. Default false.</summary>
    public bool PairActivationBits { get; init; }

    /// <summary>The cost limit. Default 4 average weight bits.</summary>
    public BitBudget Budget { get; init; } = BitBudget.AverageWeightBits(4);

    /// <summary>Paths kept per stage (K). Default 8.</summary>
    public int BeamWidth { get; init; } = 8;

    /// <summary>
    /// Target average weight bits of the candidates made for each stage (see <see cref="CandidateGenerator"/>).
    /// Null (default): every bit-width of <see cref="WeightBits"/> and the midpoint of each consecutive pair,
    /// e.g. 3, 3.5, 4, 5, 6, 7, 8 for {3, 4, 6, 8}.
    /// </summary>
    public IReadOnlyList<double>? CandidateLevels { get; init; }

    /// <summary>Consecutive sampling steps that share one choice (a stage). Default 1: every step is a stage.</summary>
    public int StepsPerStage { get; init; } = 1;

    /// <summary>Samples per model evaluation at most (paths × trajectories are batched up to this). Default 256.</summary>
    public int MaxBatch { get; init; } = 256;

    /// <summary>
    /// How temporal Fisher values weight the layer sensitivities per step (when a Fisher estimate is given), in
    /// <see cref="SensitivityMode.PerLayerAlpha"/>; <see cref="SensitivityMode.CrossLayerFisher"/> does not use it.
    /// </summary>
    public FisherWeighting SensitivityWeighting { get; init; } = new();

    /// <summary>
    /// How layer scores are made from the quantization errors and the temporal Fisher (<see cref="LayerSensitivity.FromLayers"/>).
    /// Default <see cref="SensitivityMode.PerLayerAlpha"/>, the original scores: no measurement shows yet that
    /// <see cref="SensitivityMode.CrossLayerFisher"/> (cross-layer Fisher, counted once) finds better policies.
    /// </summary>
    public SensitivityMode Sensitivity { get; init; } = SensitivityMode.PerLayerAlpha;

    /// <summary>
    /// Rounds of local refinement of the beam's best policy by end-to-end error (see <see cref="PolicyRefinement"/>):
    /// each round evaluates the moves of <see cref="RefinementNeighbourhood"/> that keep the budget and accepts the best
    /// one that lowers the final error; it stops early at a local optimum. The refined policy becomes
    /// <see cref="BitWidthSearchResult.Best"/> (the beam's pick stays in <see cref="BitWidthSearchResult.BeamBest"/>).
    /// Default 0: off.
    /// </summary>
    public int RefinementRounds { get; init; }

    /// <summary>Which moves the refinement tries. Default <see cref="Search.RefinementNeighbourhood.WithinStage"/>.</summary>
    public RefinementNeighbourhood RefinementNeighbourhood { get; init; } = RefinementNeighbourhood.WithinStage;

    /// <summary>
    /// Moves evaluated per refinement round at most: a seeded uniform sample of the feasible ones
    /// (<see cref="RefinementSeed"/>). Null (default): all of them — on a large model (30 layers × 50 stages is about
    /// 46,000 within-stage moves) give a number.
    /// </summary>
    public int? RefinementMovesPerRound { get; init; }

    /// <summary>Seed of the refinement's move sampling (used only with <see cref="RefinementMovesPerRound"/>). Default 0.</summary>
    public long RefinementSeed { get; init; }

    /// <summary>
    /// A file where the search state is saved after every stage (atomically); when it exists at the start,
    /// the search resumes from it (it must have been written by the same search). Null (default): not saved.
    /// </summary>
    public string? StatePath { get; init; }

    /// <summary>Also evaluate each candidate level as a static (time-constant) policy, as reference points. Default true.</summary>
    public bool EvaluateStaticReferences { get; init; } = true;

    /// <summary>The levels in use (explicit, or the default ones), ascending and distinct.</summary>
    public IReadOnlyList<double> Levels()
    {
        if (CandidateLevels is not null) return CandidateLevels.Distinct().Order().ToList();
        var bits = SearchedBits.Distinct().Order().ToList();
        var levels = new SortedSet<double>(bits.Select(b => (double)b));
        for (int i = 0; i + 1 < bits.Count; i++) levels.Add((bits[i] + bits[i + 1]) / 2.0);
        return levels.ToList();
    }

    /// <summary>
    /// The layer config of searched bit-width <paramref name="bits"/>: the weight bits (weight axis), or the activation
    /// bits with the static weight spec (activation axis).
    /// </summary>
    public LayerQuantConfig ConfigFor(int bits)
    {
        if (Axis == SearchAxis.ActivationBits)
            return new LayerQuantConfig(WeightSpec, bits == QuantSpec.FullPrecisionBits ? QuantSpec.FullPrecision : ActivationSpec with { Bits = bits });
        var weight = bits == QuantSpec.FullPrecisionBits ? QuantSpec.FullPrecision : WeightSpec with { Bits = bits };
        var activation = !ActivationSpec.IsEnabled || !PairActivationBits ? ActivationSpec
            : bits == QuantSpec.FullPrecisionBits ? QuantSpec.FullPrecision : ActivationSpec with { Bits = bits };
        return new LayerQuantConfig(weight, activation);
    }

    /// <summary>Every problem with these options; empty when valid.</summary>
    public IReadOnlyList<string> FindProblems()
    {
        var p = new List<string>();
        bool activationAxis = Axis == SearchAxis.ActivationBits;
        string what = activationAxis ? "activation" : "weight", letter = activationAxis ? "A" : "W";
        if (!Enum.IsDefined(Axis)) p.Add($"search axis {(int)Axis} is not a SearchAxis value.");
        else if (SearchedBits is null || SearchedBits.Count == 0) p.Add($"no {what} bit-widths to search over.");
        else
        {
            foreach (int b in SearchedBits.Distinct())
                if (b != QuantSpec.FullPrecisionBits && (b < QuantSpec.MinBits || b > QuantSpec.MaxBits))
                    p.Add($"{what} bit-width {b} is not supported: use {QuantSpec.MinBits}–{QuantSpec.MaxBits} or {QuantSpec.FullPrecisionBits}.");
            if (p.Count == 0)
                foreach (int b in SearchedBits.Distinct())
                {
                    var c = ConfigFor(b);
                    p.AddRange(c.Weight.FindProblems(QuantTarget.Weight).Select(x => $"{letter}{b}: {x}"));
                    p.AddRange(c.Activation.FindProblems(QuantTarget.Activation).Select(x => $"{letter}{b}: {x}"));
                }
        }
        if (activationAxis)
        {
            if (!ActivationSpec.IsEnabled) p.Add("the activation axis needs a quantized activation spec (its bits are replaced by the searched ones).");
            if (PairActivationBits) p.Add("PairActivationBits pairs the activation bits with searched weight bits: it does not apply to the activation axis.");
            if (Budget is { Kind: BudgetKind.AverageWeightBits or BudgetKind.WeightMemory })
                p.Add($"budget '{Budget}' does not vary on the activation axis (one weight version per layer): use BitBudget.AverageActivationBits or AverageBitOperations.");
        }
        else if (Budget is { Kind: BudgetKind.AverageActivationBits })
            p.Add($"budget '{Budget}' limits activation bits: set Axis = SearchAxis.ActivationBits, or use AverageWeightBits / AverageBitOperations / WeightMemory.");
        if (!WeightSpec.IsEnabled) p.Add("the weight spec must be a quantized spec (its bits are replaced by the searched ones).");
        if (Budget is null) p.Add("no budget.");
        else p.AddRange(Budget.FindProblems());
        if (BeamWidth < 1) p.Add($"beam width {BeamWidth} must be at least 1.");
        if (StepsPerStage < 1) p.Add($"steps per stage {StepsPerStage} must be at least 1.");
        if (MaxBatch < 1) p.Add($"max batch {MaxBatch} must be at least 1.");
        if (CandidateLevels is not null && (CandidateLevels.Count == 0 || CandidateLevels.Any(l => !double.IsFinite(l))))
            p.Add("candidate levels must be a non-empty list of finite average bit-widths.");
        if (SensitivityWeighting is null) p.Add("no sensitivity weighting.");
        else p.AddRange(SensitivityWeighting.FindProblems());
        if (!Enum.IsDefined(Sensitivity)) p.Add($"sensitivity mode {(int)Sensitivity} is not a SensitivityMode value.");
        if (RefinementRounds < 0) p.Add($"refinement rounds {RefinementRounds} must be at least 0.");
        if (!Enum.IsDefined(RefinementNeighbourhood)) p.Add($"refinement neighbourhood {(int)RefinementNeighbourhood} is not a RefinementNeighbourhood value.");
        if (RefinementMovesPerRound is < 1) p.Add($"refinement moves per round {RefinementMovesPerRound} must be at least 1 (or null for all).");
        return p;
    }
}
